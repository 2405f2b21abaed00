"""JSON-lines reading with errors that name the file and the line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Type


def read_jsonl(path: str | Path, error: Type[Exception] = ValueError) -> List[dict]:
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
