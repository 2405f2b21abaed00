"""Retrievers: one protocol (`base.Retriever`: queries -> ranked `Hit`s) and its implementations,
registered in RETRIEVERS: `generative` (GeMKR clues -> passages), `bm25`, `dense` (dual-encoder
baseline) and `image_database` (a DenseIndex of images + captions). A new retriever goes in a module
here, registers a class with `from_config(cfg, **resources)` and `retrieve(queries, k, exclude)`, and
is imported in mmrag/__init__.py."""
from mmrag.retrievers.base import EXCLUDE_MODES, Hit, Hits, Query, Retriever, as_query, build_retriever  # noqa: F401
