"""Dense multimodal retrieval database: resumable CLIP embedding shards, faiss index shards, search.

On-disk layout of a database folder (written by `build_database`, read by `DenseIndex.load`):

    manifest.json          embedder config, modality, dim, faiss spec, index shards (file, offset, rows)
    metadata.jsonl         one JSON line per index row: {"row", "id", "image", "caption"}
    embeddings/            shard_00000.npy ... (float32, L2-normalised) + progress.json (resume state)
    index/shard_00000.faiss ...

Vectors are L2-normalised, so inner product = cosine similarity. The index is exact inner product
(`Flat`) unless the config asks for IVF / HNSW / PQ; large collections are split into several faiss
shards that are searched together and merged by score. Self-matches (same id, or a near-identical
vector) are dropped by searching extra neighbours and filtering them out.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from mmrag.common.errors import UserError
from mmrag.common.jsonl import read_jsonl, write_json, write_jsonl
from mmrag.retrieval.exact_search import RERANK, RERANK_ROWS, TorchExactIndex, merge_shard_results

MANIFEST = "manifest.json"
METADATA = "metadata.jsonl"
PROGRESS = "progress.json"

DEFAULT_INDEX_SPEC: Dict[str, Any] = {
    "type": "flat",        # flat | ivf | hnsw | pq | ivfpq | factory
    "factory": None,       # a raw faiss index_factory string (type: factory)
    "nlist": 1024,         # IVF cells (clamped to the rows of a shard)
    "nprobe": 16,          # IVF cells visited per query
    "hnsw_m": 32,          # HNSW neighbours per node
    "ef_search": 64,       # HNSW search breadth
    "pq_m": 8,             # PQ sub-quantisers (must divide dim)
    "pq_nbits": 8,         # bits per PQ code
    "shard_rows": 0,       # rows per faiss shard; 0 = one shard
    "use_gpu": True,       # move Flat/IVF shards to GPU(s) for search when faiss has GPU support
    "backend": "faiss",    # faiss | torch: exact search in torch (type flat only; GPUs when present, no faiss needed)
    "torch_rerank": "auto",        # backend torch: re-score bf16 candidates on float32 rows (auto: on for bf16 rows)
    "torch_candidates": 0,         # backend torch: candidates per query for the re-rank; 0 = max(4k, 32)
    "torch_rerank_rows": "device",  # backend torch: float32 rows for the re-rank on the device | host (saves memory)
}
BACKENDS = ("faiss", "torch")


class DenseIndexError(UserError, ValueError):
    """A problem with a database folder or its inputs: names the file and what was expected."""


# ----------------------------------------------------------------------------- small IO helpers
def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, path)


def load_collection(captions_file: str | Path, image_root: Optional[str | Path] = None) -> List[Dict[str, Any]]:
    """Items {"id", "image", "caption"} from a list of {"image", "caption"}; id = the image file stem."""
    captions_file = Path(captions_file)
    try:
        entries = json.loads(captions_file.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DenseIndexError(f"{captions_file}: cannot read a JSON list of {{image, caption}}: {err}") from err
    items, seen = [], set()
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry:
            raise DenseIndexError(f"{captions_file}: entry {n} has no 'image' key: {str(entry)[:80]}")
        item_id = str(entry.get("id") or Path(entry["image"]).stem)
        if item_id in seen:
            raise DenseIndexError(f"{captions_file}: entry {n}: duplicate id {item_id!r}")
        seen.add(item_id)
        items.append({"id": item_id, "image": entry["image"], "caption": entry.get("caption", "")})
    return items


def fingerprint(obj: Any) -> str:
    """A short stable hash of a JSON-able object (config + input list), to refuse mismatched resumes."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- resumable embedding
def embed_to_shards(
    embedder: Any,
    items: Sequence[Dict[str, Any]],
    out_dir: str | Path,
    modality: str = "image",
    image_root: Optional[str | Path] = None,
    shard_size: int = 4096,
    stop_after_shards: Optional[int] = None,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    barrier: Callable[[], None] = lambda: None,
) -> Optional[np.ndarray]:
    """Embed `items` into `out_dir/shard_*.npy`, skipping shards finished by an earlier run.

    Every batch holds a fixed slice of one shard's items (one loader pass over all pending shards when
    `shard_size` is a multiple of the embedder's batch size, else one pass per shard), so the vectors
    are the same whether or not the run was interrupted, and whichever process embedded them. With several processes (`world_size`), process `rank` embeds the shards
    s with s % world_size == rank; a shard is done when its file exists (written atomically), so a
    run resumes under any number of processes. After `barrier()` rank 0 returns the full (n, dim)
    matrix; other ranks, or a run stopped by `stop_after_shards`, return None.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = [it["image"] if modality == "image" else it.get("caption", "") for it in items]
    stamp = fingerprint({"embedder": embedder.cfg, "modality": modality, "shard_size": shard_size, "keys": keys})
    state = _load_progress(out_dir, stamp, len(items), shard_size)
    if rank == 0 and not (out_dir / PROGRESS).is_file():
        write_json(out_dir / PROGRESS, state)  # the fingerprint first: a later run with another config is refused
    num_shards = (len(items) + shard_size - 1) // shard_size
    done = set(state["done"]) | {s for s in range(num_shards) if (out_dir / f"shard_{s:05d}.npy").is_file()}
    todo = [s for s in range(num_shards) if s % world_size == rank and s not in done]
    shard_vectors = _shard_vectors(embedder, keys, todo, shard_size, modality, image_root)
    for count, shard in enumerate(tqdm(todo, desc=f"embed {modality} shards", disable=not progress)):
        if stop_after_shards is not None and count >= stop_after_shards:
            return None
        vectors = next(shard_vectors)
        _save_npy_atomic(out_dir / f"shard_{shard:05d}.npy", vectors)
        if world_size == 1:  # one writer of the progress file; with several, the shard files say what is done
            state["done"] = sorted(set(state["done"]) | {shard})
            write_json(out_dir / PROGRESS, state)
    barrier()
    return load_shards(out_dir, num_shards) if rank == 0 else None


def _shard_vectors(embedder: Any, keys: List[str], todo: Sequence[int], shard_size: int, modality: str,
                   image_root: Optional[str | Path]) -> Iterator[np.ndarray]:
    """The vectors of each shard in `todo`, in order. Images go through ONE loader over every pending
    shard when a shard is a whole number of the embedder's batches: its workers start once instead of
    once per shard, and every batch holds the same images as a per-shard pass (so the same vectors);
    otherwise, and for text, each shard is its own pass. Either way no batch spans two shards, so a batch
    holds the same images under any process count or resume. Each image's index in the collection goes
    along (`positions`): it, not the image's place in this process's list, picks its decoder."""
    batch = getattr(embedder, "cfg", {}).get("batch_size") if hasattr(embedder, "image_batches") else None
    if modality != "image" or not batch or shard_size % int(batch):
        for shard in todo:
            yield _embed_chunk(embedder, keys, shard * shard_size, (shard + 1) * shard_size, modality, image_root)
        return
    root = Path(image_root) if image_root else None
    spans = [range(shard * shard_size, min((shard + 1) * shard_size, len(keys))) for shard in todo]
    positions = [at for span in spans for at in span]
    blocks = embedder.image_batches([root / keys[at] if root else Path(keys[at]) for at in positions], positions=positions)
    for span in spans:
        parts, rows = [], 0
        while rows < len(span):
            parts.append(next(blocks))
            rows += len(parts[-1])
        if rows != len(span):   # batches never straddle shards when shard_size is a multiple of batch_size
            raise RuntimeError(f"embedding stream out of step: {rows} vectors for a shard of {len(span)} images")
        yield np.concatenate(parts, axis=0)


def _embed_chunk(embedder: Any, keys: List[str], start: int, stop: int, modality: str,
                 image_root: Optional[str | Path]) -> np.ndarray:
    """The vectors of keys[start:stop] (one shard); images carry their collection indices (`positions`)
    to an embedder that streams them (`image_batches`)."""
    chunk = keys[start:stop]
    if modality == "text":
        return embedder.encode_texts(chunk)
    if modality != "image":
        raise DenseIndexError(f"modality must be 'image' or 'text', got {modality!r}")
    root = Path(image_root) if image_root else None
    paths = [root / k if root else Path(k) for k in chunk]
    if not hasattr(embedder, "image_batches"):   # a plain encoder (tests' fakes): no decoder to choose
        return embedder.encode_images(paths)
    return np.concatenate(list(embedder.image_batches(paths, positions=range(start, start + len(chunk)))), axis=0)


def _load_progress(out_dir: Path, stamp: str, num_items: int, shard_size: int) -> Dict[str, Any]:
    path = out_dir / PROGRESS
    if not path.is_file():
        return {"fingerprint": stamp, "num_items": num_items, "shard_size": shard_size, "done": []}
    state = json.loads(path.read_text())
    if state.get("fingerprint") != stamp:
        raise DenseIndexError(
            f"{path}: left by a run with another embedder config / input list / shard size "
            f"(fingerprint {state.get('fingerprint')} != {stamp}); delete {out_dir} to start over"
        )
    return state


def load_shards(out_dir: str | Path, num_shards: int) -> np.ndarray:
    """Concatenate `shard_00000.npy`... in order; a missing shard is an error naming it."""
    blocks = []
    for shard in range(num_shards):
        path = Path(out_dir) / f"shard_{shard:05d}.npy"
        if not path.is_file():
            raise DenseIndexError(f"{path}: embedding shard missing; re-run the builder to finish it")
        blocks.append(np.load(path, allow_pickle=False))
    return np.concatenate(blocks, axis=0).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- faiss
def index_spec(cfg: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Defaults <- cfg; unknown keys are an error."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(DEFAULT_INDEX_SPEC))
    if unknown:
        raise DenseIndexError(f"index config: unknown key '{unknown[0]}' (valid: {', '.join(sorted(DEFAULT_INDEX_SPEC))})")
    spec = {**DEFAULT_INDEX_SPEC, **cfg}
    if spec["backend"] not in BACKENDS:
        raise DenseIndexError(f"index config: backend {spec['backend']!r} needs to be one of {', '.join(BACKENDS)}")
    if spec["backend"] == "torch" and spec["type"] != "flat":
        raise DenseIndexError(f"index config: backend torch is exact search (type flat), got type {spec['type']!r}; "
                              "approximate indexes (ivf, hnsw, pq) use backend faiss")
    if spec["torch_rerank"] not in RERANK or type(spec["torch_rerank"]) not in (str, bool):
        raise DenseIndexError(f"index config: torch_rerank {spec['torch_rerank']!r} needs to be auto, true or false")
    if spec["torch_rerank_rows"] not in RERANK_ROWS:
        raise DenseIndexError(f"index config: torch_rerank_rows {spec['torch_rerank_rows']!r} needs to be one of "
                              f"{', '.join(RERANK_ROWS)}")
    if type(spec["torch_candidates"]) is not int or spec["torch_candidates"] < 0:
        raise DenseIndexError(f"index config: torch_candidates {spec['torch_candidates']!r} needs to be an integer "
                              ">= 0 (0: max(4k, 32))")
    return spec


def factory_string(spec: Dict[str, Any], rows: int) -> str:
    """The faiss index_factory string for a shard of `rows` vectors."""
    nlist = max(1, min(int(spec["nlist"]), rows))
    pq = f"PQ{spec['pq_m']}x{spec['pq_nbits']}"
    by_type = {
        "flat": "Flat",
        "ivf": f"IVF{nlist},Flat",
        "hnsw": f"HNSW{spec['hnsw_m']},Flat",
        "pq": pq,
        "ivfpq": f"IVF{nlist},{pq}",
        "factory": spec.get("factory"),
    }
    if spec["type"] not in by_type or not by_type[spec["type"]]:
        raise DenseIndexError(f"index config: type {spec['type']!r} needs to be one of {sorted(by_type)} (factory needs 'factory')")
    return by_type[spec["type"]]


def build_faiss_shard(vectors: np.ndarray, spec: Dict[str, Any]):
    """An inner-product faiss index over `vectors` (trained first when the type needs it)."""
    import faiss

    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    index = faiss.index_factory(vectors.shape[1], factory_string(spec, len(vectors)), faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    return index


def _tune_for_search(index: Any, spec: Dict[str, Any]) -> Any:
    import faiss

    params = faiss.ParameterSpace()
    if "IVF" in factory_string(spec, 1 << 30):
        params.set_index_parameter(index, "nprobe", int(spec["nprobe"]))
    if spec["type"] == "hnsw":
        params.set_index_parameter(index, "efSearch", int(spec["ef_search"]))
    if spec["use_gpu"] and spec["type"] in ("flat", "ivf") and hasattr(faiss, "index_cpu_to_all_gpus"):
        if faiss.get_num_gpus() > 0:
            return faiss.index_cpu_to_all_gpus(index)
    return index


def write_faiss_shards(vectors: np.ndarray, index_dir: Path, spec: Dict[str, Any], progress: bool = True) -> List[Dict[str, Any]]:
    """Split rows into shards of `spec['shard_rows']` (0 = all), build and write each; return their table.
    Backend torch writes each shard's float32 vectors (`.npy`) instead of a faiss index."""
    index_dir.mkdir(parents=True, exist_ok=True)
    step = int(spec["shard_rows"]) or max(1, len(vectors))
    table = []
    for n, start in enumerate(tqdm(range(0, len(vectors), step), desc="index shards", disable=not progress)):
        block = vectors[start:start + step]
        if spec["backend"] == "torch":
            name = f"shard_{n:05d}.npy"
            _save_npy_atomic(index_dir / name, np.ascontiguousarray(block, dtype=np.float32))
            table.append({"file": name, "offset": start, "rows": len(block), "factory": "torch-exact"})
            continue
        import faiss

        name = f"shard_{n:05d}.faiss"
        faiss.write_index(build_faiss_shard(block, spec), str(index_dir / name))
        table.append({"file": name, "offset": start, "rows": len(block), "factory": factory_string(spec, len(block))})
    return table


def load_shard(path: Path, spec: Dict[str, Any]):
    """One shard ready for search: a TorchExactIndex over a `.npy` shard, else the faiss index (on GPUs
    when `use_gpu` and faiss has them)."""
    if path.suffix == ".npy":

        return TorchExactIndex(np.load(path), devices=None if spec["use_gpu"] else ["cpu"], rerank=spec["torch_rerank"],
                               candidates=spec["torch_candidates"], rerank_rows=spec["torch_rerank_rows"])
    import faiss

    return _tune_for_search(faiss.read_index(str(path)), spec)


def build_database(
    out_dir: str | Path,
    vectors: np.ndarray,
    items: Sequence[Dict[str, Any]],
    spec: Optional[Dict[str, Any]] = None,
    embedder_cfg: Optional[Dict[str, Any]] = None,
    modality: str = "image",
    image_root: Optional[str | Path] = None,
    progress: bool = True,
) -> Path:
    """Write metadata, faiss shards and the manifest for `vectors` (row i <-> items[i])."""
    if len(vectors) != len(items):
        raise DenseIndexError(f"{out_dir}: {len(vectors)} vectors but {len(items)} metadata items")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = index_spec(spec)
    write_jsonl(out_dir / METADATA, ({"row": row, "id": item["id"], "image": item.get("image"),
                                      "caption": item.get("caption", "")} for row, item in enumerate(items)))
    shards = write_faiss_shards(vectors, out_dir / "index", spec, progress)
    manifest = {
        "version": 1,
        "num_rows": int(len(vectors)),
        "dim": int(vectors.shape[1]) if len(vectors) else 0,
        "modality": modality,
        "image_root": str(Path(image_root).resolve()) if image_root else None,
        "embedder": embedder_cfg,
        "index": spec,
        "shards": shards,
    }
    write_json(out_dir / MANIFEST, manifest)
    return out_dir


# ----------------------------------------------------------------------------- search
@dataclass
class Hit:
    row: int
    id: str
    score: float
    meta: Dict[str, Any]


@dataclass
class SearchResults:
    """One list of hits per query, best first (fewer than k when the database is small)."""

    hits: List[List[Hit]] = field(default_factory=list)

    @property
    def ids(self) -> List[List[str]]:
        return [[h.id for h in q] for q in self.hits]

    @property
    def scores(self) -> List[List[float]]:
        return [[h.score for h in q] for q in self.hits]

    @property
    def metadata(self) -> List[List[Dict[str, Any]]]:
        return [[h.meta for h in q] for q in self.hits]


class DenseIndex:
    """A loaded database: faiss shards + row-aligned metadata (+ an embedder built on demand)."""

    def __init__(self, root: Path, manifest: Dict[str, Any], metadata: List[Dict[str, Any]], shards: List[Tuple[int, Any]], embedder: Any = None) -> None:
        self.root = root
        self.manifest = manifest
        self.metadata = metadata
        self.shards = shards  # (row offset, faiss index or TorchExactIndex)
        self._embedder = embedder
        self.row_of_id = {m["id"]: m["row"] for m in metadata}
        image_root = Path(manifest["image_root"]) if manifest.get("image_root") else None
        self.row_of_path = {str(_resolve(m["image"], image_root)): m["row"] for m in metadata if m.get("image")}

    @classmethod
    def load(cls, root: str | Path, embedder: Any = None) -> "DenseIndex":
        """Open a database folder written by `build_database`."""
        root = Path(root)
        if not (root / MANIFEST).is_file():
            raise DenseIndexError(f"{root}: no {MANIFEST}; build it with data_process/create_index.py")
        manifest = json.loads((root / MANIFEST).read_text())
        metadata = read_jsonl(root / METADATA, DenseIndexError)
        if len(metadata) != manifest["num_rows"]:
            raise DenseIndexError(f"{root / METADATA}: {len(metadata)} rows, manifest says {manifest['num_rows']}")
        spec = index_spec(manifest["index"])
        shards = [(s["offset"], load_shard(root / "index" / s["file"], spec)) for s in manifest["shards"]]
        return cls(root, manifest, metadata, shards, embedder)

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from mmrag.retrieval.clip_embedder import ClipEmbedder

            self._embedder = ClipEmbedder(self.manifest["embedder"])
        return self._embedder

    def __len__(self) -> int:
        return int(self.manifest["num_rows"])

    def raw_search(self, vectors: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (nq, k); rows are -1 where fewer than k exist."""
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        parts = []
        for offset, index in self.shards:
            scores, rows = index.search(vectors, min(k, index.ntotal))
            parts.append((scores, np.where(rows >= 0, rows + offset, -1)))
        return merge_shard_results(parts, k)

    def search(self, vectors: np.ndarray, k: int, exclude_ids: Optional[Sequence[Optional[str]]] = None, dup_threshold: Optional[float] = None) -> SearchResults:
        """Top-k per query vector, dropping hits whose id is the query's id or whose score exceeds
        `dup_threshold` (a near-identical vector: the query itself under another name)."""
        vectors = np.atleast_2d(vectors)
        exclude_ids = list(exclude_ids) if exclude_ids is not None else [None] * len(vectors)
        extra = 1 if (dup_threshold is not None or any(exclude_ids)) else 0
        while True:
            want = min(k + extra, len(self))
            scores, rows = self.raw_search(vectors, want)
            hits = [self._filter(s, r, q_id, dup_threshold, k) for s, r, q_id in zip(scores, rows, exclude_ids)]
            short = any(len(h) < k for h in hits)
            if not short or want >= len(self):
                return SearchResults(hits)
            extra *= 2  # many duplicates of one query: look further

    def _filter(self, scores: np.ndarray, rows: np.ndarray, query_id: Optional[str], dup_threshold: Optional[float], k: int) -> List[Hit]:
        kept = []
        for score, row in zip(scores, rows):
            if row < 0:
                continue
            meta = self.metadata[row]
            if query_id is not None and meta["id"] == query_id:
                continue
            if dup_threshold is not None and score >= dup_threshold:
                continue
            kept.append(Hit(int(row), meta["id"], float(score), meta))
            if len(kept) == k:
                break
        return kept

    def query_ids_for_paths(self, paths: Sequence[str | Path]) -> List[Optional[str]]:
        """The database id of each query image path (None when the image is not in the database)."""
        rows = [self.row_of_path.get(str(Path(p).resolve())) for p in paths]
        return [self.metadata[r]["id"] if r is not None else None for r in rows]

    def search_by_image(self, queries: Sequence[str | Path] | np.ndarray, k: int, exclude_self: bool = True, query_ids: Optional[Sequence[Optional[str]]] = None, dup_threshold: float = 1 - 1e-4) -> SearchResults:
        """Image -> database. `queries` are image paths or (nq, dim) L2-normalised vectors.

        With `exclude_self`, hits with the query's id (given, or looked up from its path) and hits
        with cosine >= `dup_threshold` (the reference's distance < 1e-4) are dropped.
        """
        if isinstance(queries, np.ndarray):
            vectors = queries
        else:
            vectors = self.embedder.encode_images(list(queries))
            if query_ids is None:
                query_ids = self.query_ids_for_paths(queries)
        if not exclude_self:
            return self.search(vectors, k)
        return self.search(vectors, k, exclude_ids=query_ids, dup_threshold=dup_threshold)

    def search_by_text(self, texts: Sequence[str], k: int) -> SearchResults:
        """Text -> database (CLIP text embedding against the image or text rows)."""
        return self.search(self.embedder.encode_texts(list(texts)), k)

    def image_path(self, hit_or_meta: Hit | Dict[str, Any]) -> Path:
        """Absolute path of a hit's image (relative names are resolved against the build's image_root)."""
        meta = hit_or_meta.meta if isinstance(hit_or_meta, Hit) else hit_or_meta
        root = Path(self.manifest["image_root"]) if self.manifest.get("image_root") else None
        return _resolve(meta["image"], root)


def _resolve(image: str, root: Optional[Path]) -> Path:
    path = Path(image)
    return (root / path).resolve() if root and not path.is_absolute() else path.resolve()
