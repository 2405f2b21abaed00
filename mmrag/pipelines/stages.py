"""One small stage runner for the multi-run pipelines (the default GeMKR table, SURf, later DataEngine).

A `Stage` names its outputs (paths relative to the pipeline's root folder) and either a callable
(run in this process) or a command (run as a subprocess from the root folder). `run_stages`:

- skips a stage whose outputs all exist (resumable: re-running a pipeline continues where it stopped),
  unless the stage is forced;
- before a forced stage runs, removes its stale outputs (its outputs and its `stale` glob patterns),
  so nothing is appended to or resumed from an earlier run;
- after a stage runs, appends one record to `<log_dir>/stages.jsonl`: the stage, its command, the
  wall-clock seconds, and the sha256 of each output (a folder: see `sha256_of`).

`read_log` / `stage_report` read that log back for a report.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from mmrag.common.errors import ConfigError, UserError
from mmrag.common.hashing import file_sha256

LOG_NAME = "stages.jsonl"


class StageFailedError(UserError, RuntimeError):
    """A stage's command exited with an error (its own output says why) or left an output missing."""


@dataclass
class Stage:
    name: str
    outputs: Sequence[str]
    command: Sequence[str] = ()                  # the argv to run, or (with `run`) the equivalent command line
    run: Optional[Callable[[], None]] = None     # run in-process instead of `command`
    stale: Sequence[str] = ()                    # extra glob patterns removed before a forced rerun
    log_file: Optional[str] = None               # a subprocess's stdout + stderr go here (else to the console)
    complete: Optional[Callable[[], bool]] = None  # extra done-check beyond the outputs existing
    env: Dict[str, str] = field(default_factory=dict)

    def command_line(self) -> str:
        words = ["python" if w == sys.executable else str(w) for w in self.command]
        return " ".join(shlex.quote(w) for w in words)


# ----------------------------------------------------------------------------- hashing
def sha256_of(path: Path) -> str:
    """sha256 of a file's bytes; of a folder, the sha256 of the text lines "<relative path> <file sha256>\\n"
    over its files in sorted order (so the same content hashes the same wherever it lies)."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    lines = [f"{p.relative_to(path).as_posix()} {file_sha256(p)}\n" for p in sorted(path.rglob("*")) if p.is_file()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


# ----------------------------------------------------------------------------- running
def is_done(stage: Stage, root: Path) -> bool:
    if not all((root / p).exists() for p in stage.outputs):
        return False
    return stage.complete() if stage.complete else True


def remove_stale(stage: Stage, root: Path) -> List[Path]:
    """Delete a stage's outputs and the files / folders matching its stale patterns; returns them."""
    removed = []
    targets = [root / p for p in stage.outputs] + [p for pattern in stage.stale for p in sorted(root.glob(pattern))]
    for path in targets:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def _execute(stage: Stage, root: Path) -> None:
    if stage.run is not None:
        stage.run()
        return
    env = {**os.environ, **stage.env} if stage.env else None
    if stage.log_file:
        log = root / stage.log_file
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            code = subprocess.run(list(map(str, stage.command)), cwd=root, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    else:
        code = subprocess.run(list(map(str, stage.command)), cwd=root, env=env).returncode
    if code != 0:
        where = f"; see {root / stage.log_file}" if stage.log_file else ""
        raise StageFailedError(f"stage '{stage.name}' failed (exit code {code}): {stage.command_line()}{where}")


def run_stage(stage: Stage, root: Path, log_dir: Path, force: bool = False, echo: Callable[[str], None] = print) -> bool:
    """Run one stage unless done (or forced); returns True when it ran. See the module doc."""
    root = Path(root)
    if is_done(stage, root) and not force:
        echo(f"[skip] {stage.name}: outputs exist")
        return False
    for path in remove_stale(stage, root) if force else ():
        echo(f"  rm {path}")
    echo(f"[run ] {stage.name}: {stage.command_line()}")
    start = time.time()
    _execute(stage, root)
    seconds = time.time() - start
    missing = [p for p in stage.outputs if not (root / p).exists()]
    if missing:
        raise StageFailedError(f"stage '{stage.name}' finished without writing {', '.join(missing)}")
    record = {"stage": stage.name, "command": stage.command_line(), "started": round(start, 3),
              "seconds": round(seconds, 3), "forced": force,
              "outputs": {p: sha256_of(root / p) for p in stage.outputs}}
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / LOG_NAME, "a", encoding="utf-8") as f:  # appended: concurrent pipelines interleave whole lines
        f.write(json.dumps(record) + "\n")
    return True


def check_stage_names(stages: Sequence[Stage], force: Sequence[str] = (), only: Optional[Sequence[str]] = None) -> None:
    """Every name in `force` and `only` must be one of the stages."""
    known = {s.name for s in stages}
    unknown = [n for n in [*force, *(only or [])] if n not in known]
    if unknown:
        raise StageFailedError(f"unknown stage '{unknown[0]}'; stages: {', '.join(s.name for s in stages)}")


def run_stages(stages: Sequence[Stage], root: Path, log_dir: Path, force: Sequence[str] = (),
               only: Optional[Sequence[str]] = None, echo: Callable[[str], None] = print) -> List[str]:
    """Run the stages in order (those in `only`, when given); returns the names of those that ran."""
    check_stage_names(stages, force, only)
    ran = []
    for stage in stages:
        if only is None or stage.name in only:
            if run_stage(stage, root, log_dir, force=stage.name in force, echo=echo):
                ran.append(stage.name)
    return ran


def run_stages_by_wave(waves: Sequence[Sequence[Stage]], root: Path, log_dir: Path, jobs: int = 1,
                       force: Sequence[str] = (), only: Optional[Sequence[str]] = None) -> List[str]:
    """Each wave's stages `jobs` at a time (threads waiting on subprocesses), the waves in order;
    returns the stages that ran. A failed stage fails its wave after the others of it finish."""
    check_stage_names([s for wave in waves for s in wave], force, only)
    ran: List[str] = []
    for wave in waves:
        chosen = [s for s in wave if only is None or s.name in only]
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = [(s, pool.submit(run_stage, s, root, log_dir, s.name in force)) for s in chosen]
        ran += [s.name for s, f in futures if f.result()]  # raises the first failure, in stage order
    return ran


def run_pipeline_stages(stages: Sequence[Stage], root: Path, log_dir: Path, force: Sequence[str] = (),
                        only: Optional[Sequence[str]] = None,
                        stage_overrides: Sequence[str] = ()) -> List[str]:
    """`run_stages` for a pipeline's command line: every name in `stage_overrides` (a pipeline's
    per-stage key=value) must be a stage; names in `only` that are not stages (the report, which the
    caller makes after this) select no stage."""
    names = [s.name for s in stages]
    unknown = sorted(set(stage_overrides) - set(names))
    if unknown:
        raise ConfigError(f"stage overrides name unknown stage(s) {unknown}; stages: {', '.join(names)}")
    return run_stages(stages, root, log_dir, force=force, only=[n for n in only if n in names] if only else None)


# ----------------------------------------------------------------------------- reading the log
def read_log(log_dir: Path) -> List[Dict]:
    path = Path(log_dir) / LOG_NAME
    if not path.is_file():
        return []
    from mmrag.common.jsonl import read_jsonl

    return read_jsonl(path)


def last_runs(log_dir: Path) -> Dict[str, Dict]:
    """stage name -> its latest record in the log."""
    return {record["stage"]: record for record in read_log(log_dir)}


def stage_report(stages: Sequence[Stage], log_dir: Path) -> List[str]:
    """A markdown table: every stage, the seconds of its latest recorded run, and its command."""
    runs = last_runs(log_dir)
    lines = ["| stage | seconds | command |", "|---|---|---|"]
    for stage in stages:
        seconds = f"{runs[stage.name]['seconds']:.1f}" if stage.name in runs else "-"
        lines.append(f"| {stage.name} | {seconds} | `{stage.command_line()}` |")
    return lines
