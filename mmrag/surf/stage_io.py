"""Resumable, chunkable JSON-lines stages for the data-construction pipeline.

A stage maps input records one-to-one to output rows, each with a unique `key`. With `--chunk i/n`
a process handles the i-th contiguous slice of the inputs and writes `<stage>.part<i>of<n>.jsonl`;
a finished part gets a `.done` marker. A re-run skips keys already written (a half-written last
line from a crash is cut off first), so many processes or GPUs can share a stage and a killed one
can simply be started again. The next stage reads the merged parts in input order.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

from tqdm import tqdm

from mmrag.common.errors import UserError
from mmrag.common.jsonl import read_jsonl as _read_jsonl

Record = Dict[str, Any]


class StageError(UserError, RuntimeError):
    """A stage input/output problem: names the file and what is missing or malformed."""


def parse_chunk(text: str) -> Tuple[int, int]:
    """'2/8' -> (2, 8): the third of eight slices (0-based)."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or int(match[2]) < 1 or int(match[1]) >= int(match[2]):
        raise StageError(f"--chunk {text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return int(match[1]), int(match[2])


def chunk_slice(items: Sequence[Any], index: int, count: int) -> Sequence[Any]:
    """The index-th of `count` contiguous, near-equal slices (concatenating all gives `items`)."""
    n = len(items)
    return items[index * n // count:(index + 1) * n // count]


def read_jsonl(path: Path) -> List[Record]:
    """The rows of a stage file; a bad line raises StageError naming file:line."""
    return _read_jsonl(path, StageError)


def _cut_partial_tail(path: Path) -> None:
    """Drop a last line without its newline (a write interrupted mid-line)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def part_path(work_dir: Path, stage: str, index: int, count: int) -> Path:
    return work_dir / f"{stage}.part{index}of{count}.jsonl"


def run_stage(
    inputs: Sequence[Record],
    out_path: Path,
    process: Callable[[List[Record]], List[Record]],
    key: Callable[[Record], str],
    batch_size: int = 16,
    desc: str = "stage",
) -> List[Record]:
    """Apply `process` to the inputs whose key is not yet in `out_path`, `batch_size` at a time,
    appending rows as they come; then mark the file done. Returns all rows of `out_path`."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out_path.is_file():
        _cut_partial_tail(out_path)
        done = {row["key"] for row in read_jsonl(out_path)}
    todo = [r for r in inputs if key(r) not in done]
    with open(out_path, "a", encoding="utf-8") as f:
        for start in tqdm(range(0, len(todo), batch_size), desc=desc, unit="batch"):
            batch = todo[start:start + batch_size]
            rows = process(batch)
            if len(rows) != len(batch):
                raise StageError(f"{desc}: {len(rows)} outputs for a batch of {len(batch)} inputs")
            f.write("".join(json.dumps({**row, "key": key(src)}, ensure_ascii=False) + "\n" for row, src in zip(rows, batch)))
            f.flush()
    Path(str(out_path) + ".done").touch()
    return read_jsonl(out_path)


def run_chunked_stage(
    inputs: Sequence[Record],
    work_dir: Path,
    stage: str,
    process: Callable[[List[Record]], List[Record]],
    key: Callable[[Record], str],
    chunk: Tuple[int, int] = (0, 1),
    batch_size: int = 16,
) -> Path:
    """run_stage over this process's slice of the inputs into `<stage>.part<i>of<n>.jsonl`."""
    index, count = chunk
    out = part_path(work_dir, stage, index, count)
    run_stage(list(chunk_slice(inputs, index, count)), out, process, key, batch_size, desc=f"{stage} {index}/{count}")
    return out


def read_stage(work_dir: Path, stage: str) -> List[Record]:
    """All rows of a stage: `<stage>.jsonl` if present, else its parts in order (all must be done)."""
    whole = work_dir / f"{stage}.jsonl"
    if whole.is_file():
        return read_jsonl(whole)
    parts = sorted(work_dir.glob(f"{stage}.part*of*.jsonl"))
    if not parts:
        raise StageError(f"{work_dir}: no output of stage '{stage}' ({whole.name} or {stage}.part<i>of<n>.jsonl); run it first")
    counts = {int(re.search(r"of(\d+)\.jsonl$", p.name)[1]) for p in parts}
    if len(counts) != 1:
        raise StageError(f"{work_dir}: parts of stage '{stage}' were written with different chunk counts {sorted(counts)}")
    count = counts.pop()
    rows: List[Record] = []
    for index in range(count):
        path = part_path(work_dir, stage, index, count)
        if not Path(str(path) + ".done").is_file():
            raise StageError(f"{path}: chunk {index}/{count} of stage '{stage}' is missing or unfinished; run it (again)")
        rows.extend(read_jsonl(path))
    return rows
