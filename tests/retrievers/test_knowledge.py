"""The knowledge retrievers: BM25 on a hand-made corpus against the BM25 formula worked by hand
(bm25s defaults: k1 1.5, b 0.75, Lucene idf), and the generative retriever's clue details."""
from __future__ import annotations

import math

import pytest

import mmrag  # noqa: F401
from mmrag.retrievers.base import Hits, Query, build_retriever

# every word is a content word (no stop words), so the tokens are the lower-cased words
TEXTS = ["zebra savanna grass", "banana fruit yellow", "zebra zebra herd grass", "lighthouse ship night"]


class ListIndex:
    """The part of a corpus index the BM25 retriever reads."""

    n_passages = len(TEXTS)

    def passage_text(self, row):
        return TEXTS[row]

    def passage_id(self, row):
        return f"p{row}"


def bm25(tf, df, dl, n=4, avgdl=13 / 4, k1=1.5, b=0.75):
    """One term's BM25 contribution in Lucene's form (no (k1 + 1) factor: it scales every score alike)."""
    idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
    return idf * tf / (tf + k1 * (1 - b + b * dl / avgdl))


def test_bm25_ranks_and_scores_as_the_formula():
    retriever = build_retriever("bm25", None, index=ListIndex())
    zebra_grass, banana = retriever.retrieve([Query("q1", "Zebra grass?"), Query("q2", "banana")], k=2)
    assert isinstance(zebra_grass, Hits)
    # p2 has zebra twice (length 4), p0 zebra once (length 3); both have grass once; df = 2 for both
    assert [h.id for h in zebra_grass] == ["p2", "p0"]
    assert [h.score for h in zebra_grass] == pytest.approx([bm25(2, 2, 4) + bm25(1, 2, 4), 2 * bm25(1, 2, 3)], rel=1e-5)
    assert zebra_grass[0].text == TEXTS[2] and zebra_grass[0].image is None and zebra_grass[0].meta == {"row": 2}
    assert banana[0].id == "p1" and banana[0].score == pytest.approx(bm25(1, 1, 3), rel=1e-5)
    assert banana[1].score == 0.0  # nothing else mentions a banana


def test_bm25_self_exclusion_by_id_and_k_capped_by_the_corpus():
    retriever = build_retriever("bm25", None, index=ListIndex())
    (hits,) = retriever.retrieve([Query("p2", "zebra")], k=10)
    assert [h.id for h in hits][:1] == ["p0"] and len(hits) == 3  # p2 is the query itself
    (hits,) = retriever.retrieve([Query("p2", "zebra")], k=10, exclude="none")
    assert [h.id for h in hits][:2] == ["p2", "p0"] and len(hits) == 4
