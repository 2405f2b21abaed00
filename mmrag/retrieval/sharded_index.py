"""Several corpus-index shards, built independently (one per process or node), queried as one.

Ranges, continuations and passage look-ups are merged across shards; passage rows are numbered
shard after shard. A sharded index answers exactly like one index over the whole corpus (tested).
`load_index` opens either kind of folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from mmrag.retrieval.corpus_index import (DEFAULT_LOCATE_CAP, FORMAT_NAME, FORMAT_VERSION, CorpusIndex, CorpusIndexError,
                                          Cursor, SARange, check_passage_ids, tokenize_passages, tokenizer_fingerprint)

SHARDS_FILE = "shards.json"


@dataclass(frozen=True)
class ShardedRange:
    """One SARange per shard; the prefix occurs `count` times over all shards."""

    parts: Tuple[SARange, ...]

    @property
    def count(self) -> int:
        return sum(part.count for part in self.parts)

    @property
    def depth(self) -> int:
        return self.parts[0].depth


def _merge_counts(pairs: Sequence[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    """Union of (sorted tokens, counts) lists with the counts of equal tokens summed."""
    pairs = [p for p in pairs if len(p[0])]
    if len(pairs) <= 1:
        return pairs[0] if pairs else (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    tokens, inverse = np.unique(np.concatenate([p[0] for p in pairs]), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate([p[1] for p in pairs]), minlength=len(tokens))
    return tokens.astype(np.int64), counts.astype(np.int64)


class ShardedCorpusIndex:
    """Several independently built `CorpusIndex` shards answering as one index (rows are global)."""

    def __init__(self, directory: Path, shards: Sequence[CorpusIndex]) -> None:
        if not shards:
            raise CorpusIndexError(f"{directory}: a sharded index needs at least one shard")
        self.directory, self.shards = Path(directory), list(shards)
        self.separator_id = self.shards[0].separator_id
        self.row_offsets = np.cumsum([0] + [s.n_passages for s in self.shards])
        self.n_passages = int(self.row_offsets[-1])
        self.n_tokens = sum(s.n_tokens for s in self.shards)
        self._root = _merge_counts([s.range_continuations(s.root()) for s in self.shards])

    @classmethod
    def build(cls, passages: Iterable[Tuple[str, str]], tokenizer, out_dir: Path, shards: int, *,
              batch_size: int = 1024, workers: int = 1, store_text: bool = True, progress: bool = True,
              **options) -> "ShardedCorpusIndex":
        """Split the corpus into `shards` contiguous chunks and build one index per chunk under `out_dir`.

        On a cluster each node can run `CorpusIndex.build` on its own chunk instead; only shards.json
        (the ordered list of shard folders) ties them together.
        """
        rows = list(passages)
        check_passage_ids([pid for pid, _ in rows])
        if shards < 1 or shards > len(rows):
            raise CorpusIndexError(f"--shards must be in [1, {len(rows)}] for {len(rows)} passages, got {shards}")
        texts = [text for _, text in rows]
        ids = tokenize_passages(texts, tokenizer, batch_size=batch_size, workers=workers, progress=progress)
        if not any(len(seq) for seq in ids):
            raise CorpusIndexError(f"empty corpus: all {len(ids)} passages tokenise to no tokens")
        bounds = np.linspace(0, len(rows), shards + 1).astype(int)
        names, fingerprint = [], tokenizer_fingerprint(tokenizer)
        for k in tqdm(range(shards), desc="build shards", unit="shard", disable=not progress):
            part = slice(bounds[k], bounds[k + 1])
            names.append(f"shard_{k:03d}")
            CorpusIndex.build_from_token_ids([pid for pid, _ in rows[part]], ids[part], Path(out_dir) / names[-1],
                                             fingerprint, texts=texts[part] if store_text else None,
                                             allow_empty=True, **options)
        write_shard_manifest(Path(out_dir), names)
        return cls.load(out_dir, tokenizer=tokenizer, verify_hash=False)

    @classmethod
    def load(cls, directory: Path, tokenizer=None, verify_hash: bool = True,
             locate_cap: int = DEFAULT_LOCATE_CAP) -> "ShardedCorpusIndex":
        directory = Path(directory)
        manifest = json.loads((directory / SHARDS_FILE).read_text())
        if manifest.get("format") != FORMAT_NAME + "-shards":
            raise CorpusIndexError(f"{directory / SHARDS_FILE}: not a shard manifest of {FORMAT_NAME}")
        shards = [CorpusIndex.load(directory / name, tokenizer, verify_hash, locate_cap) for name in manifest["shards"]]
        hashes = {s.header["tokenizer"]["vocab_sha256"] for s in shards}
        if len(hashes) > 1:
            raise CorpusIndexError(f"{directory / SHARDS_FILE}: shards were built with different tokenizers")
        return cls(directory, shards)

    def root(self) -> ShardedRange:
        return ShardedRange(tuple(s.root() for s in self.shards))

    def range(self, ngram: Sequence[int]) -> ShardedRange:
        return ShardedRange(tuple(s.range(ngram) for s in self.shards))

    def narrow(self, rng: ShardedRange, token: int) -> ShardedRange:
        return ShardedRange(tuple(s.narrow(part, token) for s, part in zip(self.shards, rng.parts)))

    def range_continuations(self, rng: ShardedRange) -> Tuple[np.ndarray, np.ndarray]:
        if rng.depth == 0:
            return self._root
        return _merge_counts([s.range_continuations(p) for s, p in zip(self.shards, rng.parts) if p.count])

    def range_passages(self, rng: ShardedRange, limit: int) -> np.ndarray:
        found: List[np.ndarray] = []
        for shard, part, offset in zip(self.shards, rng.parts, self.row_offsets):
            remaining = limit - sum(len(f) for f in found)
            if remaining <= 0:
                break
            found.append(shard.range_passages(part, remaining) + offset)
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    def occurring_tokens(self) -> np.ndarray:
        return self._root[0]

    def cursor(self, prefix: Sequence[int] = ()) -> Optional["ShardedCursor"]:
        parts = tuple(s.cursor(prefix) for s in self.shards)
        return ShardedCursor(parts) if any(p is not None for p in parts) or not prefix else None

    def _locate(self, row: int) -> Tuple[CorpusIndex, int]:
        if not 0 <= row < self.n_passages:
            raise IndexError(f"passage row {row} out of range [0, {self.n_passages}) in {self.directory}")
        k = int(np.searchsorted(self.row_offsets, row, side="right") - 1)
        return self.shards[k], row - int(self.row_offsets[k])

    def passage_tokens(self, row: int) -> np.ndarray:
        shard, local = self._locate(row)
        return shard.passage_tokens(local)

    def passage_id(self, row: int) -> str:
        shard, local = self._locate(row)
        return shard.passage_id(local)

    def passage_text(self, row: int) -> str:
        shard, local = self._locate(row)
        return shard.passage_text(local)

    count = CorpusIndex.count
    continuations = CorpusIndex.continuations
    passages = CorpusIndex.passages


class ShardedCursor:
    """Decoding cursor over shards: one `Cursor` per shard (None where the prefix is absent)."""

    __slots__ = ("parts", "tokens", "counts")

    def __init__(self, parts: Tuple[Optional[Cursor], ...]) -> None:
        self.parts = parts
        self.tokens, self.counts = _merge_counts([(p.tokens, p.counts) for p in parts if p is not None])

    def advance(self, token: int) -> Optional["ShardedCursor"]:
        parts = tuple(p.advance(token) if p is not None else None for p in self.parts)
        return ShardedCursor(parts) if any(p is not None for p in parts) else None


def write_shard_manifest(out_dir: Path, shard_names: Sequence[str]) -> Path:
    """Write shards.json listing shard folders (relative to `out_dir`) in corpus order."""
    path = Path(out_dir) / SHARDS_FILE
    path.write_text(json.dumps({"format": FORMAT_NAME + "-shards", "version": FORMAT_VERSION,
                                "shards": list(shard_names)}, indent=1))
    return path


def load_index(directory: Path, tokenizer=None, verify_hash: bool = True, locate_cap: int = DEFAULT_LOCATE_CAP):
    """Open a single index (header.json) or a sharded one (shards.json) from `directory`."""
    directory = Path(directory)
    if (directory / SHARDS_FILE).is_file():
        return ShardedCorpusIndex.load(directory, tokenizer, verify_hash, locate_cap)
    return CorpusIndex.load(directory, tokenizer, verify_hash, locate_cap)
