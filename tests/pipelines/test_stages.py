"""The stage runner: skips a stage whose outputs exist, a forced stage first removes its stale outputs,
and the log records the command, the seconds and sha256 hashes recomputed here with hashlib."""
from __future__ import annotations

import hashlib
import json
import sys

import pytest

from mmrag.pipelines.stages import LOG_NAME, Stage, StageFailedError, run_stages, stage_report


def writer(root, calls, text):
    def run():
        calls.append(text)
        (root / "out").mkdir(exist_ok=True)
        (root / "out" / "a.txt").write_text(text)
    return run


def test_skip_when_outputs_exist_and_force_removes_stale(tmp_path):
    calls = []
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.log").write_text("stale")
    stage = Stage("a", ["out/a.txt"], ["make-a", "--x", "1"], run=writer(tmp_path, calls, "one"), stale=["out/*.log"])
    assert run_stages([stage], tmp_path, tmp_path / "log") == ["a"]
    assert run_stages([stage], tmp_path, tmp_path / "log") == []          # outputs exist: skipped
    assert calls == ["one"] and (tmp_path / "out" / "old.log").exists()   # a skip removes nothing
    stage.run = writer(tmp_path, calls, "two")
    assert run_stages([stage], tmp_path, tmp_path / "log", force=["a"]) == ["a"]
    assert calls == ["one", "two"] and not (tmp_path / "out" / "old.log").exists()


def test_forced_stage_does_not_see_its_old_output(tmp_path):
    seen = []
    (tmp_path / "r.txt").write_text("old")

    def run():
        seen.append((tmp_path / "r.txt").exists())
        (tmp_path / "r.txt").write_text("new")

    run_stages([Stage("r", ["r.txt"], ["r"], run=run)], tmp_path, tmp_path, force=["r"])
    assert seen == [False]


def test_log_records_command_seconds_and_hashes(tmp_path):
    (tmp_path / "d").mkdir()
    code = "import pathlib; p = pathlib.Path('d'); (p / 'x.bin').write_bytes(b'abc'); (p / 'sub').mkdir(); (p / 'sub' / 'y').write_text('yy')"
    stage = Stage("cmd", ["d/x.bin", "d"], [sys.executable, "-c", code])
    run_stages([stage], tmp_path, tmp_path / "log")
    record = json.loads((tmp_path / "log" / LOG_NAME).read_text())
    assert record["stage"] == "cmd" and record["command"].startswith("python -c ")
    assert record["seconds"] >= 0
    file_hash = hashlib.sha256(b"abc").hexdigest()
    folder_lines = f"sub/y {hashlib.sha256(b'yy').hexdigest()}\nx.bin {file_hash}\n"
    assert record["outputs"] == {"d/x.bin": file_hash, "d": hashlib.sha256(folder_lines.encode()).hexdigest()}
    assert stage_report([stage], tmp_path / "log")[2].startswith(f"| cmd | {record['seconds']:.1f} | `python -c ")


def test_failures_are_named(tmp_path):
    with pytest.raises(StageFailedError, match="exit code 3"):
        run_stages([Stage("bad", ["x"], [sys.executable, "-c", "raise SystemExit(3)"])], tmp_path, tmp_path)
    with pytest.raises(StageFailedError, match="without writing x"):
        run_stages([Stage("lazy", ["x"], ["noop"], run=lambda: None)], tmp_path, tmp_path)
    with pytest.raises(StageFailedError, match="unknown stage 'nope'"):
        run_stages([Stage("lazy", ["x"], ["noop"], run=lambda: None)], tmp_path, tmp_path, force=["nope"])


def test_pipeline_stages_check_overrides_and_leave_non_stage_names_to_the_caller(tmp_path):
    from mmrag.common.errors import ConfigError
    from mmrag.pipelines.stages import run_pipeline_stages

    made = []
    stages = [Stage(name, [name], ["noop"], run=lambda n=name: (made.append(n), (tmp_path / n).write_text(n)))
              for name in ("a", "b")]
    with pytest.raises(ConfigError, match=r"stage overrides name unknown stage\(s\) \['c'\]; stages: a, b"):
        run_pipeline_stages(stages, tmp_path, tmp_path / "log", stage_overrides=["a", "c"])
    assert made == []
    assert run_pipeline_stages(stages, tmp_path, tmp_path / "log", only=["b", "report"]) == ["b"]
    assert made == ["b"]
