"""Suffix-array index over the token ids of a passage corpus, for constrained generative retrieval.

Layout: every passage is tokenised without BOS/EOS and followed by one separator id (= the
tokenizer's vocabulary size, so no model can ever generate it); the suffix array (libdivsufsort
through pydivsufsort) sorts all suffixes of that token string. A clue (an n-gram of token ids)
then owns one contiguous interval of the suffix array, and extending it by one token narrows the
interval; a match can never cross a passage boundary because a clue never contains the separator.

Short prefixes are precomputed so every `continuations` call is fast: the SA start of every token
(prefix length 0), the distinct bigrams as a CSR table (prefix length 1) and the continuations of
every longer prefix that occurs more than `frequent_min_count` times (up to `max_precomputed_depth`
tokens). All other prefixes have at most `frequent_min_count` occurrences, cheap to scan.

Files (all `.npy`, memory-mapped on load, no pickle) plus `header.json` holding the format version,
tokenizer name/vocab hash, counts and the sha256 of every array file. Shards and `load_index`
live in sharded_index.py. See docs/CORPUS_INDEX.md.
"""
from __future__ import annotations

import concurrent.futures
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from pydivsufsort import divsufsort
from tqdm import tqdm
from mmrag.common.errors import UserError
from mmrag.common.hashing import file_sha256

FORMAT_NAME = "mmrag-corpus-index"
FORMAT_VERSION = 1
HEADER_FILE = "header.json"
DEFAULT_FREQUENT_MIN_COUNT = 4096  # prefixes seen more often than this get precomputed continuations
DEFAULT_MAX_PRECOMPUTED_DEPTH = 16  # tokens; longer clues than this are not generated anyway
DEFAULT_LOCATE_CAP = 1_000_000  # occurrences scanned per passage lookup (a clue like "the" has millions)


class CorpusIndexError(UserError, ValueError):
    """Bad corpus, bad or corrupt index files, or a tokenizer that does not match the index."""


@dataclass(frozen=True)
class SARange:
    """Suffix-array interval [lo, hi) of all suffixes that start with a prefix of `depth` tokens."""

    lo: int
    hi: int
    depth: int

    @property
    def count(self) -> int:
        return max(0, self.hi - self.lo)


def tokenizer_fingerprint(tokenizer) -> Dict[str, object]:
    """Name, vocabulary size and sha256 of the (token -> id) vocabulary: identifies a tokenizer."""
    vocab = tokenizer.get_vocab()
    items = sorted(vocab.items(), key=lambda kv: (kv[1], kv[0]))
    digest = hashlib.sha256(json.dumps(items, ensure_ascii=False).encode("utf-8")).hexdigest()
    name = Path(str(getattr(tokenizer, "name_or_path", "") or "unknown")).name
    return {"name": name, "vocab_size": max(vocab.values()) + 1, "vocab_sha256": digest}


@functools.lru_cache(maxsize=2)
def _tokenizer_from_path(path: str):
    from transformers import AutoTokenizer  # only worker processes need this import

    return AutoTokenizer.from_pretrained(path)


def _encode_batch(texts: List[str], tokenizer=None, tokenizer_path: str = "") -> List[np.ndarray]:
    tok = tokenizer if tokenizer is not None else _tokenizer_from_path(tokenizer_path)
    ids = tok(texts, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    return [np.asarray(seq, dtype=np.int32) for seq in ids]


def tokenize_passages(texts: Sequence[str], tokenizer, batch_size: int = 1024, workers: int = 1,
                      progress: bool = True) -> List[np.ndarray]:
    """Token ids of every passage, no BOS/EOS and no truncation (the index has no length limit).

    With `workers > 1` batches go to worker processes that load the tokenizer from its folder
    (`tokenizer.name_or_path`), so only paths, texts and ids cross process boundaries.
    """
    batches = [list(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
    bar = tqdm(total=len(texts), desc="tokenise", unit="passage", disable=not progress)
    out: List[np.ndarray] = []
    if workers <= 1:
        for batch in batches:
            out.extend(_encode_batch(batch, tokenizer=tokenizer))
            bar.update(len(batch))
    else:
        path = str(getattr(tokenizer, "name_or_path", ""))
        if not Path(path).is_dir():
            raise CorpusIndexError(f"workers={workers} needs a tokenizer loaded from a folder, got name_or_path={path!r}")
        work = functools.partial(_encode_batch, tokenizer_path=path)
        with concurrent.futures.ProcessPoolExecutor(workers) as pool:
            for ids in pool.map(work, batches):
                out.extend(ids)
                bar.update(len(ids))
    bar.close()
    return out


def read_id_text_csv(path: Path) -> List[Tuple[str, str]]:
    """(id, text) rows of a corpus CSV with header `id,text` or `kid,text` (OKVQA-GS112K)."""
    import csv

    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] not in (["id", "text"], ["kid", "text"]):
            raise CorpusIndexError(f"{path}:1: expected a header 'id,text' or 'kid,text', got {header}")
        rows = []
        for line_no, row in enumerate(reader, start=2):
            if len(row) != 2:
                raise CorpusIndexError(f"{path}:{line_no}: expected 2 fields (id,text), got {len(row)}")
            rows.append((row[0], row[1]))
    return rows


def check_passage_ids(ids: Sequence[str]) -> None:
    """Refuse an empty corpus and duplicate passage ids (naming both rows)."""
    if not ids:
        raise CorpusIndexError("empty corpus: no passages to index")
    if len(set(ids)) == len(ids):
        return
    seen: Dict[str, int] = {}
    for row, pid in enumerate(ids):
        if pid in seen:
            raise CorpusIndexError(f"duplicate passage id {pid!r} at rows {seen[pid]} and {row}")
        seen[pid] = row


def _runs(values: np.ndarray, separator: int) -> Tuple[np.ndarray, np.ndarray]:
    """(distinct values, run lengths) of a sorted array, without the separator's run (sorted last)."""
    if len(values) == 0 or (values[0] == values[-1] and values[0] == separator):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if values[0] == values[-1]:  # one distinct value: most deep prefixes, worth skipping the scan for
        return np.array([values[0]], dtype=np.int64), np.array([len(values)], dtype=np.int64)
    change = np.empty(len(values), dtype=bool)
    change[0] = True
    np.not_equal(values[1:], values[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, len(values)))
    distinct = values[starts].astype(np.int64)
    if distinct[-1] == separator:
        distinct, counts = distinct[:-1], counts[:-1]
    return distinct, counts


def _suffix_array(tokens: np.ndarray) -> np.ndarray:
    """Suffix array of an integer string: libdivsufsort sorts the big-endian bytes, we keep aligned starts."""
    width = tokens.dtype.itemsize
    raw = tokens.astype(f">u{width}").view(np.uint8)
    byte_sa = divsufsort(raw)
    aligned = byte_sa[(byte_sa & (width - 1)) == 0]
    aligned >>= width.bit_length() - 1
    return aligned.astype(np.int32 if len(tokens) < 2 ** 31 else np.int64, copy=False)


def _bigram_table(tokens: np.ndarray, sa: np.ndarray, token_starts: np.ndarray, separator: int):
    """CSR table of distinct bigrams: row t lists the tokens following t, sorted, with their counts.

    In SA order the token after each suffix's first token is sorted within that first token's range,
    so one gather plus run detection gives every bigram (no sort).
    """
    real = int(token_starts[separator])  # suffixes that start with a real token come first in the SA
    following = np.take(tokens, sa[:real] + 1)  # np.take: faster than fancy indexing for big gathers
    change = np.empty(real, dtype=bool)
    change[:1] = True
    np.not_equal(following[1:], following[:-1], out=change[1:])
    firsts = token_starts[1:separator]
    change[firsts[firsts < real]] = True
    starts = np.flatnonzero(change)
    counts = np.diff(np.append(starts, real))
    first = np.take(tokens, np.take(sa, starts))
    nxt = following[starts]
    keep = nxt != separator
    indptr = np.zeros(separator + 1, dtype=np.int64)
    np.cumsum(np.bincount(first[keep], minlength=separator), out=indptr[1:])
    return indptr, nxt[keep], counts[keep].astype(np.int32)


def _frequent_children(lo: int, counts: np.ndarray, min_count: int) -> List[Tuple[int, int]]:
    """SA ranges of the continuations (consecutive sub-ranges from `lo`) seen more than `min_count` times."""
    child_lo = lo + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    big = counts > min_count
    return list(zip(child_lo[big].tolist(), (child_lo[big] + counts[big]).tolist()))


def _frequent_table(tokens, sa, token_starts, bigram, separator, min_count, max_depth):
    """Continuations of every prefix of 2..max_depth tokens that occurs more than `min_count` times.

    Keyed by `lo * (max_depth + 1) + depth` (a prefix is identified by its SA start and length).
    """
    indptr_b, _, count_b = bigram
    level: List[Tuple[int, int]] = []
    for first in np.flatnonzero(np.diff(token_starts[:separator + 1]) > min_count):
        row = slice(indptr_b[first], indptr_b[first + 1])
        level += _frequent_children(int(token_starts[first]), count_b[row], min_count)
    keys, nexts, counts = [], [], []
    for depth in range(2, max_depth + 1):
        deeper: List[Tuple[int, int]] = []
        for lo, hi in level:
            distinct, runs = _runs(np.take(tokens, sa[lo:hi] + depth), separator)
            keys.append(lo * (max_depth + 1) + depth)
            nexts.append(distinct)
            counts.append(runs)
            deeper += _frequent_children(lo, runs, min_count)
        level = deeper
    order = np.argsort(np.asarray(keys, dtype=np.int64), kind="stable")
    indptr = np.zeros(len(keys) + 1, dtype=np.int64)
    np.cumsum([len(nexts[i]) for i in order], out=indptr[1:])
    cat = lambda parts, dt: np.concatenate([parts[i] for i in order]).astype(dt) if keys else np.zeros(0, dt)
    return (np.asarray(keys, dtype=np.int64)[order], indptr, cat(nexts, tokens.dtype), cat(counts, np.int32))


def _concatenate(token_lists: Sequence[np.ndarray], separator: int) -> Tuple[np.ndarray, np.ndarray]:
    dtype = np.uint16 if separator < 2 ** 16 else np.int32  # 2 bytes/token for vocabularies up to 65535
    lengths = np.fromiter((len(t) + 1 for t in token_lists), dtype=np.int64, count=len(token_lists))
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    sep = np.full(1, separator, dtype=np.int32)
    wide = np.concatenate([piece for seq in token_lists for piece in (np.asarray(seq, dtype=np.int32), sep)])
    if wide.min() < 0 or wide.max() > separator or np.count_nonzero(wide == separator) != len(token_lists):
        outside = (wide < 0) | (wide >= separator)
        outside[offsets[1:] - 1] = False  # the separators themselves
        bad = int(np.flatnonzero(outside)[0])
        row = int(np.searchsorted(offsets, bad, side="right") - 1)
        raise CorpusIndexError(f"passage row {row}: token id {int(wide[bad])} outside [0, {separator}) of the tokenizer")
    return wide.astype(dtype), offsets


def _text_arrays(texts: Sequence[str]) -> Dict[str, np.ndarray]:
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return {"text_bytes": np.frombuffer(b"".join(encoded), dtype=np.uint8), "text_offsets": offsets}


def _save_arrays(out_dir: Path, arrays: Dict[str, np.ndarray]) -> Dict[str, dict]:
    """Write every array as `<name>.npy` and return {name: {file, dtype, shape, sha256}} (hashed in threads)."""
    for name, arr in arrays.items():
        np.save(out_dir / f"{name}.npy", arr, allow_pickle=False)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:  # hashlib releases the GIL on big buffers
        digests = dict(zip(arrays, pool.map(file_sha256, [out_dir / f"{n}.npy" for n in arrays])))
    return {name: {"file": f"{name}.npy", "dtype": str(arr.dtype), "shape": list(arr.shape),
                   "sha256": digests[name]} for name, arr in arrays.items()}


class CorpusIndex:
    """One memory-mapped suffix-array index (one shard). Build with `build`, open with `load`."""

    def __init__(self, directory: Path, header: dict, arrays: Dict[str, np.ndarray], tokenizer=None,
                 locate_cap: int = DEFAULT_LOCATE_CAP) -> None:
        self.directory, self.header, self.tokenizer, self.locate_cap = Path(directory), header, tokenizer, locate_cap
        self.separator_id = int(header["separator_id"])
        self.n_passages = int(header["n_passages"])
        self.n_tokens = int(header["n_tokens"])  # real tokens, separators not counted
        self._frequent_min_count = int(header["frequent_min_count"])
        self._max_depth = int(header["max_precomputed_depth"])
        self._a = {name: np.asarray(arr) for name, arr in arrays.items()}  # plain views: memmap slicing is slow
        starts = np.asarray(arrays["token_starts"])
        self._root_counts = np.diff(starts[: self.separator_id + 1])
        self._root_tokens = np.flatnonzero(self._root_counts)
        self._root_counts = self._root_counts[self._root_tokens]

    # ---------------------------------------------------------------- build / load
    @classmethod
    def build(cls, passages: Iterable[Tuple[str, str]], tokenizer, out_dir: Path, *, batch_size: int = 1024,
              workers: int = 1, store_text: bool = True, progress: bool = True, **options) -> "CorpusIndex":
        """Tokenise (id, text) passages with `tokenizer` and build the index into `out_dir`."""
        rows = list(passages)
        check_passage_ids([pid for pid, _ in rows])
        texts = [text for _, text in rows]
        ids = tokenize_passages(texts, tokenizer, batch_size=batch_size, workers=workers, progress=progress)
        return cls.build_from_token_ids([pid for pid, _ in rows], ids, out_dir, tokenizer_fingerprint(tokenizer),
                                        texts=texts if store_text else None, tokenizer=tokenizer, **options)

    @classmethod
    def build_from_token_ids(cls, passage_ids: Sequence[str], token_lists: Sequence[np.ndarray], out_dir: Path,
                             fingerprint: Dict[str, object], *, texts: Optional[Sequence[str]] = None,
                             tokenizer=None, frequent_min_count: int = DEFAULT_FREQUENT_MIN_COUNT,
                             max_precomputed_depth: int = DEFAULT_MAX_PRECOMPUTED_DEPTH,
                             allow_empty: bool = False) -> "CorpusIndex":
        """Build from already tokenised passages (token ids < fingerprint['vocab_size']).

        `allow_empty` admits passages without any token at all: one shard of a corpus may be so.
        """
        check_passage_ids(passage_ids)
        separator = int(fingerprint["vocab_size"])
        tokens, offsets = _concatenate(token_lists, separator)
        if len(tokens) == len(passage_ids) and not allow_empty:
            raise CorpusIndexError(f"empty corpus: all {len(passage_ids)} passages tokenise to no tokens")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / HEADER_FILE).unlink(missing_ok=True)  # the header is written last: no half-built index loads
        sa = _suffix_array(tokens)  # libdivsufsort already uses every core (OpenMP)
        token_starts = np.zeros(separator + 2, dtype=np.int64)
        np.cumsum(np.bincount(tokens, minlength=separator + 1), out=token_starts[1:])
        bigram = _bigram_table(tokens, sa, token_starts, separator)
        frequent = _frequent_table(tokens, sa, token_starts, bigram, separator, frequent_min_count,
                                   max_precomputed_depth)
        arrays = {"tokens": tokens, "sa": sa, "offsets": offsets, "token_starts": token_starts,
                  "bigram_indptr": bigram[0], "bigram_next": bigram[1], "bigram_count": bigram[2],
                  "frequent_keys": frequent[0], "frequent_indptr": frequent[1], "frequent_next": frequent[2],
                  "frequent_count": frequent[3], "passage_ids": np.array([str(p).encode("utf-8") for p in passage_ids])}
        if texts is not None:
            arrays.update(_text_arrays(texts))
        specs = _save_arrays(out_dir, arrays)
        header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "tokenizer": fingerprint,
                  "separator_id": separator, "n_passages": len(passage_ids), "n_tokens": len(tokens) - len(passage_ids),
                  "frequent_min_count": frequent_min_count, "max_precomputed_depth": max_precomputed_depth,
                  "arrays": specs}
        (out_dir / HEADER_FILE).write_text(json.dumps(header, indent=1))
        return cls.load(out_dir, tokenizer=tokenizer, verify_hash=False)

    @classmethod
    def load(cls, directory: Path, tokenizer=None, verify_hash: bool = True,
             locate_cap: int = DEFAULT_LOCATE_CAP) -> "CorpusIndex":
        """Open an index (arrays memory-mapped). Checks format, shapes, sha256 (unless `verify_hash=False`)
        and, when a tokenizer is given, that it is the one the index was built with."""
        directory = Path(directory)
        header_path = directory / HEADER_FILE
        if not header_path.is_file():
            raise CorpusIndexError(f"{header_path}: missing; {directory} is not a corpus index")
        header = json.loads(header_path.read_text())
        if header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
            raise CorpusIndexError(f"{header_path}: expected format {FORMAT_NAME} v{FORMAT_VERSION}, "
                                   f"got {header.get('format')} v{header.get('version')}")
        if tokenizer is not None:
            check_tokenizer(header, tokenizer, header_path)
        arrays = {name: _open_array(directory, spec, verify_hash) for name, spec in header["arrays"].items()}
        return cls(directory, header, arrays, tokenizer=tokenizer, locate_cap=locate_cap)

    # ---------------------------------------------------------------- ranges
    def root(self) -> SARange:
        """The range of the empty prefix (every suffix that starts with a real token)."""
        return SARange(0, int(self._a["token_starts"][self.separator_id]), 0)

    def range(self, ngram: Sequence[int]) -> SARange:
        """Suffix-array interval of `ngram` (empty when it does not occur)."""
        rng = self.root()
        for token in ngram:
            rng = self.narrow(rng, int(token))
            if rng.count == 0:
                break
        return rng

    def narrow(self, rng: SARange, token: int) -> SARange:
        """Extend the prefix of `rng` by one token: a table lookup or a binary search inside the range."""
        depth = rng.depth + 1
        if rng.count == 0 or not 0 <= token < self.separator_id:
            return SARange(rng.lo, rng.lo, depth)
        if rng.depth == 0:
            starts = self._a["token_starts"]
            return SARange(int(starts[token]), int(starts[token + 1]), 1)
        table = self._table(rng)
        if table is not None:
            nxt, counts = table
            i = int(np.searchsorted(nxt, token))
            if i == len(nxt) or int(nxt[i]) != token:
                return SARange(rng.lo, rng.lo, depth)
            lo = rng.lo + int(counts[:i].sum())
            return SARange(lo, lo + int(counts[i]), depth)
        return SARange(self._bisect(rng, token, False), self._bisect(rng, token, True), depth)

    def _bisect(self, rng: SARange, token: int, after: bool) -> int:
        """First SA row in `rng` whose next token is >= token (> token when `after`)."""
        sa, tokens, lo, hi = self._a["sa"], self._a["tokens"], rng.lo, rng.hi
        while lo < hi:
            mid = (lo + hi) // 2
            value = int(tokens[int(sa[mid]) + rng.depth])
            if value < token or (after and value == token):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _table(self, rng: SARange) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """Precomputed (next tokens, counts) of a range, or None when it must be scanned."""
        if rng.depth == 0:
            return self._root_tokens, self._root_counts
        if rng.depth == 1:
            first = int(self._a["tokens"][int(self._a["sa"][rng.lo])])
            row = slice(int(self._a["bigram_indptr"][first]), int(self._a["bigram_indptr"][first + 1]))
            return self._a["bigram_next"][row], self._a["bigram_count"][row]
        if rng.count <= self._frequent_min_count or rng.depth > self._max_depth:
            return None
        keys = self._a["frequent_keys"]
        key = rng.lo * (self._max_depth + 1) + rng.depth
        i = int(np.searchsorted(keys, key))
        if i == len(keys) or int(keys[i]) != key:
            return None
        row = slice(int(self._a["frequent_indptr"][i]), int(self._a["frequent_indptr"][i + 1]))
        return self._a["frequent_next"][row], self._a["frequent_count"][row]

    # ---------------------------------------------------------------- queries
    def range_continuations(self, rng: SARange) -> Tuple[np.ndarray, np.ndarray]:
        """Distinct tokens that follow the prefix of `rng` (sorted) and how often each does."""
        if rng.count == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        table = self._table(rng)
        if table is not None:
            return np.asarray(table[0], dtype=np.int64), np.asarray(table[1], dtype=np.int64)
        following = np.take(self._a["tokens"], self._a["sa"][rng.lo:rng.hi] + rng.depth)
        return _runs(following, self.separator_id)

    def range_passages(self, rng: SARange, limit: int) -> np.ndarray:
        """Ascending passage rows containing the prefix of `rng`, at most `limit` (first `locate_cap` hits scanned)."""
        if rng.count == 0 or limit <= 0:
            return np.zeros(0, dtype=np.int64)
        positions = self._a["sa"][rng.lo:min(rng.hi, rng.lo + self.locate_cap)]
        rows = np.unique(np.searchsorted(self._a["offsets"], positions, side="right") - 1)
        return rows[:limit].astype(np.int64)

    def occurring_tokens(self) -> np.ndarray:
        """Every token id that occurs in the corpus, ascending."""
        return self._root_tokens.astype(np.int64)

    def cursor(self, prefix: Sequence[int] = ()) -> Optional["Cursor"]:
        """A decoding cursor at `prefix` (None when a non-empty prefix does not occur)."""
        rng = self.range(prefix)
        return Cursor(self, rng) if rng.count or not prefix else None

    # ---------------------------------------------------------------- passages
    def passage_tokens(self, row: int) -> np.ndarray:
        offsets = self._a["offsets"]
        return np.asarray(self._a["tokens"][int(offsets[row]):int(offsets[row + 1]) - 1], dtype=np.int64)

    def passage_id(self, row: int) -> str:
        self._check_row(row)
        return bytes(self._a["passage_ids"][row]).decode("utf-8")

    def passage_text(self, row: int) -> str:
        """Stored text of passage `row`, or its tokens decoded when the index was built without text."""
        self._check_row(row)
        if "text_bytes" in self._a:
            start, end = int(self._a["text_offsets"][row]), int(self._a["text_offsets"][row + 1])
            return bytes(self._a["text_bytes"][start:end]).decode("utf-8")
        if self.tokenizer is None:
            raise CorpusIndexError(f"{self.directory}: built without text; load it with a tokenizer to decode passages")
        return self.tokenizer.decode(self.passage_tokens(row).tolist())

    def _check_row(self, row: int) -> None:
        if not 0 <= row < self.n_passages:
            raise IndexError(f"passage row {row} out of range [0, {self.n_passages}) in {self.directory}")

    # ---------------------------------------------------------------- n-gram convenience
    def count(self, ngram: Sequence[int]) -> int:
        """Occurrences of `ngram` in the corpus (never across passage boundaries)."""
        return self.range(ngram).count

    def continuations(self, prefix: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
        return self.range_continuations(self.range(prefix))

    def passages(self, ngram: Sequence[int], limit: int = 10) -> np.ndarray:
        return self.range_passages(self.range(ngram), limit)


def check_tokenizer(header: dict, tokenizer, where: Path) -> None:
    """Refuse a tokenizer whose vocabulary differs from the one the index was built with."""
    theirs, ours = header["tokenizer"], tokenizer_fingerprint(tokenizer)
    if theirs["vocab_sha256"] != ours["vocab_sha256"]:
        raise CorpusIndexError(f"{where}: index built with tokenizer {theirs['name']} (vocab {theirs['vocab_size']}, "
                               f"sha256 {theirs['vocab_sha256'][:12]}), got {ours['name']} (vocab {ours['vocab_size']}, "
                               f"sha256 {ours['vocab_sha256'][:12]})")


def _open_array(directory: Path, spec: dict, verify_hash: bool) -> np.ndarray:
    path = directory / spec["file"]
    if not path.is_file():
        raise CorpusIndexError(f"{path}: array file missing")
    if verify_hash and file_sha256(path) != spec["sha256"]:
        raise CorpusIndexError(f"{path}: sha256 mismatch (corrupt or truncated); rebuild the index")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        raise CorpusIndexError(f"{path}: unreadable array ({err})") from err
    if list(arr.shape) != spec["shape"] or str(arr.dtype) != spec["dtype"]:
        raise CorpusIndexError(f"{path}: expected {spec['dtype']}{spec['shape']}, found {arr.dtype}{list(arr.shape)}")
    return arr


class Cursor:
    """A prefix being decoded: its range and continuations, advanced one token at a time (no re-search)."""

    __slots__ = ("index", "range", "tokens", "counts", "_child_lo")

    def __init__(self, index: CorpusIndex, rng: SARange) -> None:
        self.index, self.range = index, rng
        self.tokens, self.counts = index.range_continuations(rng)
        self._child_lo: Optional[np.ndarray] = None

    def advance(self, token: int) -> Optional["Cursor"]:
        """The cursor one token further, or None when `token` never follows this prefix."""
        i = int(np.searchsorted(self.tokens, token))
        if i == len(self.tokens) or int(self.tokens[i]) != token:
            return None
        if self._child_lo is None:  # children are consecutive sub-ranges, in token order
            self._child_lo = self.range.lo + np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        lo = int(self._child_lo[i])
        return Cursor(self.index, SARange(lo, lo + int(self.counts[i]), self.range.depth + 1))
