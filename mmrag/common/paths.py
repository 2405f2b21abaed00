"""Local-path checks: every weight, tokenizer and data file comes from a path named in a config."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from mmrag.common.errors import MissingPathError


def require_path(config_key: str, path: Optional[str], kind: str = "path") -> Path:
    """Return `path` as a Path, or raise naming the config key that should point at it."""
    if not path:
        raise MissingPathError(f"config key '{config_key}' is empty: set it to a local {kind}")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise MissingPathError(
            f"config key '{config_key}' points at {resolved}, which does not exist "
            f"(expected a local {kind}; nothing is downloaded from a hub)"
        )
    return resolved
