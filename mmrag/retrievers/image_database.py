"""An image database (a DenseIndex folder of images + captions) as a Retriever.

Image queries (image -> nearest images) and text queries (text -> images, CLIP text embedding) are
both served; each hit is a database item with its absolute image path and its caption as `text`.
Image paths are resolved one way: a relative path in the database's metadata is resolved against
the image root recorded in its manifest (`DenseIndex.image_path`). With `exclude="self"` an image
query never retrieves itself: not by id (the query's id, or the database id of the query's path)
and not as a near-identical vector (cosine >= `dup_threshold`).

Config section (`evaluation.retrieval` of vqa_eval, `database`/`embedder` of SURf's data tool):
`database` (folder, required), `embedder` (keys replacing the database's own embedder config, e.g.
{device: cpu}), `dup_threshold`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from mmrag.common.config import plain
from mmrag.common.errors import ConfigError
from mmrag.common.registry import RETRIEVERS
from mmrag.retrieval.dense_index import DenseIndex
from mmrag.retrieval.dense_index import Hit as IndexHit
from mmrag.retrievers.base import Hit, Hits, Query, QueryLike, as_query, check_exclude, drop_self

DUP_THRESHOLD = 1 - 1e-4  # the reference's "distance < 1e-4" on normalised vectors


@RETRIEVERS.register("image_database")
class ImageDatabaseRetriever:
    def __init__(self, index: DenseIndex, dup_threshold: float = DUP_THRESHOLD) -> None:
        self.index, self.dup_threshold = index, float(dup_threshold)

    @classmethod
    def from_config(cls, cfg: Any, **resources: Any) -> "ImageDatabaseRetriever":
        cfg = plain(cfg) or {}
        if not cfg.get("database"):
            raise ConfigError("retrieval.database: a DenseIndex folder (mmrag-create-index) is required")
        index = DenseIndex.load(cfg["database"])
        overrides = cfg.get("embedder") or {}
        if overrides:  # the database's own embedder config with these keys replaced
            from mmrag.retrieval.clip_embedder import ClipEmbedder

            index = DenseIndex.load(cfg["database"], ClipEmbedder({**index.manifest["embedder"], **overrides}))
        return cls(index, cfg.get("dup_threshold") or DUP_THRESHOLD)

    def retrieve(self, queries: Sequence[QueryLike], k: int, exclude: str = "self") -> List[Hits]:
        """Image queries are embedded once per distinct path; text queries once per distinct text."""
        check_exclude(exclude)
        queries = [as_query(q) for q in queries]
        by_image = self._image_hits([q for q in queries if q.image is not None], k, exclude)
        by_text = self._text_hits([q for q in queries if q.image is None], k, exclude)
        out = []
        for q in queries:
            if q.image is None and not q.text:
                raise ConfigError(f"image database query {q!r}: needs an image or a text")
            hits = by_image[(q.image, q.id)] if q.image is not None else by_text[(q.text, q.id)]
            out.append(Hits(hits))
        return out

    def _image_hits(self, queries: List[Query], k: int, exclude: str) -> Dict[tuple, List[Hit]]:
        keys = list(dict.fromkeys((q.image, q.id) for q in queries))
        if not keys:
            return {}
        paths = list(dict.fromkeys(path for path, _ in keys))
        vectors = self.index.embedder.encode_images(paths)
        row = {p: i for i, p in enumerate(paths)}
        if exclude == "self":  # the given id, else the database id of the query's path
            path_ids = dict(zip(paths, self.index.query_ids_for_paths(paths)))
            ids = [qid if qid is not None else path_ids[path] for path, qid in keys]
            results = self.index.search(vectors[[row[p] for p, _ in keys]], k, exclude_ids=ids,
                                        dup_threshold=self.dup_threshold)
        else:
            results = self.index.search(vectors[[row[p] for p, _ in keys]], k)
        return {key: [self._hit(h) for h in hits] for key, hits in zip(keys, results.hits)}

    def _text_hits(self, queries: List[Query], k: int, exclude: str) -> Dict[tuple, List[Hit]]:
        keys = list(dict.fromkeys((q.text, q.id) for q in queries))
        if not keys:
            return {}
        vectors = np.asarray(self.index.embedder.encode_texts([text for text, _ in keys]))
        ids: Optional[List[Optional[str]]] = [qid for _, qid in keys] if exclude == "self" else None
        results = self.index.search(vectors, k, exclude_ids=ids)
        return {key: drop_self([self._hit(h) for h in hits], Query(key[1], key[0]), exclude)
                for key, hits in zip(keys, results.hits)}

    def _hit(self, hit: IndexHit) -> Hit:
        image = self.index.image_path(hit) if hit.meta.get("image") else None
        return Hit(hit.id, hit.score, str(image) if image else None, hit.meta.get("caption", ""), dict(hit.meta))
