"""The Retriever protocol over a hand-built DenseIndex: hits best first with hand-computed cosines,
absolute image paths resolved against the database's image root, and self-exclusion by id and by
near-identical vector; text queries; the registry builds it from a config section."""
from __future__ import annotations

import numpy as np
import pytest

import mmrag  # noqa: F401
from mmrag.common.errors import ConfigError
from mmrag.retrieval.dense_index import DenseIndex, build_database
from mmrag.retrievers.base import Hit, Query, build_retriever
from mmrag.retrievers.image_database import ImageDatabaseRetriever

# 3-d unit vectors: a_copy is a again under another name; b is near a; c, d are orthogonal to a
ROWS = {"a": [1, 0, 0], "a_copy": [1, 0, 0], "b": [0.6, 0.8, 0], "c": [0, 1, 0], "d": [0, 0, 1]}


class FakeEmbedder:
    """Image path -> the vector of the database item of that file stem; text -> a fixed vector."""

    def __init__(self, texts=None):
        self.texts, self.image_calls = texts or {}, []

    def encode_images(self, paths):
        self.image_calls.append([str(p) for p in paths])
        stem = lambda p: str(p).rsplit("/", 1)[-1].split(".")[0]  # noqa: E731
        return np.asarray([ROWS.get(stem(p), [0, 0.6, 0.8]) for p in paths], dtype=np.float32)

    def encode_texts(self, texts):
        return np.asarray([self.texts[t] for t in texts], dtype=np.float32)


@pytest.fixture
def database(tmp_path):
    """Relative image names in the metadata, image root = tmp_path/world (absolute in the manifest)."""
    items = [{"id": key, "image": f"images/{key}.jpg", "caption": f"caption of {key}"} for key in ROWS]
    build_database(tmp_path / "db", np.asarray(list(ROWS.values()), dtype=np.float32), items,
                   image_root=tmp_path / "world", progress=False)
    return tmp_path


def retriever_for(root, **texts):
    return ImageDatabaseRetriever(DenseIndex.load(root / "db", FakeEmbedder(texts)))


def test_image_query_hits_are_ranked_with_absolute_paths_and_self_excluded(database):
    query = str(database / "world" / "images" / "a.jpg")  # the database's own item a
    (hits,) = retriever_for(database).retrieve([query], k=2)
    # a (same id) and a_copy (cosine 1: near-identical) are dropped; b: cosine 0.6; c, d: 0 (row order)
    assert [h.id for h in hits] == ["b", "c"]
    assert [h.score for h in hits] == pytest.approx([0.6, 0.0])
    assert hits[0].image == str((database / "world" / "images" / "b.jpg").resolve())
    assert hits[0].text == "caption of b" and hits[0].meta["row"] == 2


def test_exclude_none_keeps_the_query_itself(database):
    query = database / "world" / "images" / "a.jpg"
    (hits,) = retriever_for(database).retrieve([query], k=3, exclude="none")
    assert [h.id for h in hits] == ["a", "a_copy", "b"]
    assert [h.score for h in hits] == pytest.approx([1.0, 1.0, 0.6])


def test_outside_image_excludes_only_near_duplicates_and_each_path_is_embedded_once(database):
    retriever = retriever_for(database)
    outside = str(database / "elsewhere" / "x.jpg")  # vector (0, .6, .8): not in the database
    hits = retriever.retrieve([outside, outside, Query(id="c", image=outside)], k=2)
    assert [h.id for h in hits[0]] == ["d", "c"] and hits[0] == hits[1]
    assert [h.score for h in hits[0]] == pytest.approx([0.8, 0.6])
    assert [h.id for h in hits[2]] == ["d", "b"]  # the query's own id (c) given explicitly
    assert retriever.index.embedder.image_calls == [[outside]]


def test_text_query(database):
    retriever = retriever_for(database, zebra=[0, 0.8, 0.6])
    (hits,) = retriever.retrieve([Query(text="zebra")], k=3)
    assert [h.id for h in hits] == ["c", "b", "d"]  # cosines 0.8, 0.8 * 0.8, 0.6
    assert [h.score for h in hits] == pytest.approx([0.8, 0.64, 0.6])
    assert all(isinstance(h, Hit) and h.image.startswith(str(database.resolve())) for h in hits)


def test_built_from_config_by_name(database):
    retriever = build_retriever("image_database", {"database": str(database / "db")})
    assert isinstance(retriever, ImageDatabaseRetriever) and len(retriever.index) == 5
    with pytest.raises(ConfigError, match="retrieval.database"):
        build_retriever("image_database", {"database": None})
    with pytest.raises(ConfigError, match="exclude"):
        retriever.retrieve([], k=1, exclude="others")
