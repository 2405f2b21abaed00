"""CaMML's context-example retriever: a dense database of the training problems, searched per sample.

The database holds one row per training example of a ScienceQA-layout folder (the world's
benchmark or the real ScienceQA): `rows: image` embeds the example's image (examples without an
image are not in it; CaMML's own database is image rows), `rows: text` its question + answer text.
A query is the sample's question text (`query: text`, CaMML's choice: text -> image through a joint
embedding space) or its image (`query: image`, image -> image; a sample without an image falls back
to its text). The embedder is any `mmrag.retrieval.clip_embedder` config: the world-trained CLIP
(`model_name: local-dir:output/clip_world_small/final`) or an open_clip / HF CLIP from local weights.

The database is built once through the dense-database code (`embed_to_shards`: resumable shards;
`build_database`: faiss + metadata) and reused; its manifest records the embedder, and a database
built with another encoder than the config names is refused (`encoder_fingerprint`).
`write_neighbours` stores each problem's neighbours in a JSON file read by the `scienceqa` dataset
builder (`k_train` = 10 for the training split, searched with exclude="self": a sample never sees
its own answer; `k_eval` = 4 otherwise); a file with the same inputs is reused, not recomputed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mmrag.common.config import plain
from mmrag.common.errors import ConfigError, UserError
from mmrag.common.hashing import file_sha256
from mmrag.common.jsonl import write_json
from mmrag.common.registry import RETRIEVERS
from mmrag.datasets.scienceqa import example_text, question_text, read_scienceqa
from mmrag.retrieval.clip_embedder import embedder_config
from mmrag.retrieval.dense_index import DenseIndex, build_database, embed_to_shards, fingerprint
from mmrag.retrievers.base import Hit, Hits, Query, QueryLike, as_query, check_exclude

DEFAULTS: Dict[str, Any] = {
    "database": None,          # folder of the dense database (built on first use)
    "data_path": None,         # ScienceQA-layout folder whose examples fill the database
    "example_split": "train",
    "prompt_format": "QCM-LEPA",  # how an example's text is written (its row text and its shot text)
    "rows": "image",           # image | text: what a database row embeds
    "query": "text",           # text | image: what a sample is searched by
    "k_train": 10,             # neighbours kept for the training split (self excluded)
    "k_eval": 4,               # neighbours kept for other splits
    "shard_size": 4096,
    "embedder": {},            # mmrag.retrieval.clip_embedder config (defaults: the tiny random CLIP)
}
MODEL_KEYS = ("type", "model_name", "model_cfg", "pretrained", "path", "seed")


class EncoderMismatchError(UserError, ValueError):
    """A context database built with another encoder than the config names."""


def encoder_fingerprint(embedder_cfg: Dict[str, Any]) -> str:
    """What decides the vectors: the model keys and the sha256 of any weights file they name."""
    cfg = embedder_config(embedder_cfg)
    keyed = {k: cfg.get(k) for k in MODEL_KEYS}
    for key in ("pretrained", "path"):
        path = Path(str(cfg.get(key) or ""))
        if cfg.get(key) and path.is_file():
            keyed[f"{key}_sha256"] = file_sha256(path)
    return fingerprint(keyed)


@RETRIEVERS.register("context_examples")
class ContextExampleRetriever:
    def __init__(self, cfg: Dict[str, Any], embedder: Any = None) -> None:
        """`embedder` replaces the one the config describes (tests); it needs `cfg`, `encode_texts`
        and `encode_images`."""
        unknown = sorted(set(cfg) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"context retriever: unknown key '{unknown[0]}' (valid: {', '.join(sorted(DEFAULTS))})")
        self.cfg = {**DEFAULTS, **cfg}
        for key, allowed in (("rows", ("image", "text")), ("query", ("text", "image"))):
            if self.cfg[key] not in allowed:
                raise ConfigError(f"context retriever: {key}={self.cfg[key]!r}; expected one of {allowed}")
        for key in ("database", "data_path"):
            if not self.cfg[key]:
                raise ConfigError(f"context retriever: '{key}' is required")
        if embedder is None:
            from mmrag.retrieval.clip_embedder import ClipEmbedder

            embedder = ClipEmbedder(self.cfg["embedder"])
        self.embedder = embedder
        self.encoder = encoder_fingerprint(embedder.cfg)
        self.examples = {it["id"]: it for it in read_scienceqa(self.cfg["data_path"], self.cfg["example_split"])}
        self.index = self._open_or_build()

    @classmethod
    def from_config(cls, cfg: Any, **resources: Any) -> "ContextExampleRetriever":
        return cls(plain(cfg) or {}, resources.get("embedder"))

    # ------------------------------------------------------------------ the database
    def _rows(self) -> List[Dict[str, Any]]:
        items = [it for it in self.examples.values() if self.cfg["rows"] == "text" or it["image"]]
        if not items:
            raise UserError(f"{self.cfg['data_path']}: no {self.cfg['example_split']} examples with "
                            f"{'an image' if self.cfg['rows'] == 'image' else 'text'} for the context database")
        return [{"id": it["id"], "image": it["image"], "caption": example_text(it, self.cfg["prompt_format"])}
                for it in items]

    def _open_or_build(self) -> DenseIndex:
        root = Path(self.cfg["database"])
        if (root / "manifest.json").is_file():
            index = DenseIndex.load(root, self.embedder)
            built = index.manifest.get("context_encoder")
            if built != self.encoder:
                raise EncoderMismatchError(
                    f"{root / 'manifest.json'}: context database built with encoder {built}, but the config's "
                    f"embedder is {self.encoder}; point 'database' at a new folder or rebuild this one")
            return index
        rows = self._rows()
        vectors = embed_to_shards(self.embedder, rows, root / "embeddings", self.cfg["rows"], None,
                                  self.cfg["shard_size"], progress=False)
        build_database(root, vectors, rows, None, self.embedder.cfg, self.cfg["rows"], None, progress=False)
        manifest = json.loads((root / "manifest.json").read_text())
        write_json(root / "manifest.json", {**manifest, "context_encoder": self.encoder})
        return DenseIndex.load(root, self.embedder)

    # ------------------------------------------------------------------ search
    def query_vectors(self, queries: Sequence[Query]) -> np.ndarray:
        """One L2-normalised vector per query: its image (query: image, when it has one) or its text."""
        by_image = [self.cfg["query"] == "image" and q.image is not None for q in queries]
        out: List[Optional[np.ndarray]] = [None] * len(queries)
        images = [i for i, b in enumerate(by_image) if b]
        texts = [i for i, b in enumerate(by_image) if not b]
        for idxs, encode, key in ((images, self.embedder.encode_images, "image"),
                                  (texts, self.embedder.encode_texts, "text")):
            if idxs:
                values = [getattr(queries[i], key) for i in idxs]
                if any(v is None for v in values):
                    raise ConfigError(f"context retriever: query {queries[idxs[0]].id} has no {key}")
                for i, vec in zip(idxs, np.asarray(encode(values), dtype=np.float32)):
                    out[i] = vec
        return np.stack(out) if out else np.zeros((0, 1), np.float32)

    def retrieve(self, queries: Sequence[QueryLike], k: int, exclude: str = "self") -> List[Hits]:
        check_exclude(exclude)
        queries = [as_query(q) for q in queries]
        if not queries:
            return []
        ids = [q.id for q in queries] if exclude == "self" else None
        results = self.index.search(self.query_vectors(queries), k, exclude_ids=ids)
        return [Hits(Hit(h.id, h.score, h.meta.get("image"), h.meta.get("caption", ""), dict(h.meta)) for h in hits)
                for hits in results.hits]

    def queries_for(self, items: Sequence[Dict[str, Any]]) -> List[Query]:
        return [Query(it["id"], question_text(it), it["image"]) for it in items]

    # ------------------------------------------------------------------ neighbours files
    def write_neighbours(self, split: str, out_path: str | Path) -> Dict[str, Any]:
        """Neighbours of every problem of `split` (training: k_train, self excluded; else k_eval),
        written as JSON; reused when a file with the same inputs exists."""
        items = read_scienceqa(self.cfg["data_path"], split)
        train = split == self.cfg["example_split"]
        k = int(self.cfg["k_train"] if train else self.cfg["k_eval"])
        stamp = fingerprint({"encoder": self.encoder, "rows": self.cfg["rows"], "query": self.cfg["query"], "k": k,
                             "split": split, "ids": [it["id"] for it in items], "db": len(self.index),
                             "texts": [question_text(it) for it in items]})
        out_path = Path(out_path)
        if out_path.is_file():
            cached = json.loads(out_path.read_text())
            if cached.get("fingerprint") == stamp:
                return cached
        hits = self.retrieve(self.queries_for(items), k, exclude="self" if train else "none")
        for it, found in zip(items, hits):
            if not found:
                raise UserError(f"{self.cfg['database']}: problem {it['id']} ({split}) has no neighbour but itself "
                                f"in the context database; it needs at least one other example")
        data = {"fingerprint": stamp, "encoder": self.encoder, "split": split, "k": k, "exclude": "self" if train else "none",
                "database": str(self.cfg["database"]), "query": self.cfg["query"], "rows": self.cfg["rows"],
                "neighbours": {it["id"]: [h.id for h in found] for it, found in zip(items, hits)},
                "scores": {it["id"]: [round(h.score, 5) for h in found] for it, found in zip(items, hits)}}
        write_json(out_path, data)
        return data
