"""The one retriever protocol: queries in, ranked hits out.

    retriever.retrieve(queries, k, exclude="self") -> [[Hit, ...] per query, best first]

A query is a `Query(id, text, image)` (a plain path string or Path means "this image"). A `Hit`
is one retrieved item: its id, score (higher is better), image (an absolute path, or None for a
text-only item such as a passage), text payload (a passage, a caption) and free-form `meta`. Each
query's list is a `Hits`, a list that may carry query-level details in `.meta` (the generative
retriever keeps the clues it wrote there).

`exclude="self"` drops the query itself from its hits: hits whose id is the query's id and, for
image databases, hits whose vector is near-identical to the query's (the same picture under another
name). `exclude="none"` keeps everything. Implementations register in `RETRIEVERS` and are built by
`build_retriever(name, cfg, **resources)`: `cfg` is the config section the retriever documents,
`resources` the already-built objects it needs (a model, a corpus index).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Protocol, Sequence, Union

from mmrag.common.errors import ConfigError
from mmrag.common.registry import RETRIEVERS

EXCLUDE_MODES = ("self", "none")


@dataclass
class Hit:
    """One retrieved item. `image` is absolute (or None); `text` is what a prompt shows of it."""

    id: str
    score: float
    image: Optional[str] = None
    text: str = ""
    meta: Dict[str, Any] = field(default_factory=dict)


class Hits(list):
    """One query's hits, best first; `meta` holds details of how they were found (per query)."""

    def __init__(self, hits: Iterable[Hit] = (), meta: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(hits)
        self.meta: Dict[str, Any] = dict(meta or {})


@dataclass(frozen=True)
class Query:
    """What to retrieve for: text, an image path, or both; `id` names it for self-exclusion."""

    id: Optional[str] = None
    text: Optional[str] = None
    image: Optional[str] = None


QueryLike = Union[Query, str, Path]


def as_query(query: QueryLike) -> Query:
    """A Query; a bare path (str or Path) is an image query."""
    return query if isinstance(query, Query) else Query(image=str(query))


def check_exclude(exclude: str) -> str:
    if exclude not in EXCLUDE_MODES:
        raise ConfigError(f"retrieve(exclude=...): expected one of {EXCLUDE_MODES}, got {exclude!r}")
    return exclude


class Retriever(Protocol):
    def retrieve(self, queries: Sequence[QueryLike], k: int, exclude: str = "self") -> List[Hits]:
        """Per query, its k best hits (fewer when the collection is smaller), best first."""
        ...


def build_retriever(name: str, cfg: Any, **resources: Any) -> Retriever:
    """The retriever registered as `name`, built from its config section and resources."""
    return RETRIEVERS.get(name).from_config(cfg, **resources)


def drop_self(hits: Iterable[Hit], query: Query, exclude: str) -> List[Hit]:
    """`hits` without the query's own id when excluding self."""
    if exclude == "self" and query.id is not None:
        return [h for h in hits if h.id != query.id]
    return list(hits)
