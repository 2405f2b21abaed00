"""JSON-lines reading and writing: errors name the file and the line; writes are atomic."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Type

from mmrag.common.errors import DataFormatError


def read_jsonl(path: str | Path, error: Type[Exception] = DataFormatError) -> List[dict]:
    """Every non-blank line of `path` parsed as JSON; a bad line raises `error` naming file:line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise error(f"{path}:{n}: not valid JSON ({err.msg})") from err
    return rows


def write_jsonl(path: str | Path, rows: Iterable[Dict[str, Any]]) -> Path:
    """Write one JSON object per line, atomically: a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write `obj` as indented JSON, atomically (results files read by reports and pipelines)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
