"""File digests: the one sha256 reader (assets, corpus-index arrays, checkpoints, pipeline outputs)."""
from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20  # read 1 MiB at a time: hashing a multi-GB array never holds it in memory


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
