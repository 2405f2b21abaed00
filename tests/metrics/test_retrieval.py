"""Retrieval metrics on a hand-made fixture, in both case modes (GeMKR and case-insensitive)."""
from __future__ import annotations

import json

import pytest

from mmrag.metrics.retrieval import (RetrievalMetricError, RetrievalQuery, evaluate_retrieval, is_relevant,
                                     mrr_at_k, precision_at_k, hit_at_k, write_retrieval_results)

PASSAGES = {
    "a": "Paris is the capital of France.",
    "b": "The Eiffel tower was built in 1889.",
    "c": "bananas are yellow.",
    "d": "A zebra has stripes.",
    "e": "Yellow is the colour of a ripe banana.",
}


def query(qid, ids, answers):
    return RetrievalQuery(qid, list(ids), [PASSAGES[i] for i in ids], answers)


FIXTURE = [
    query("q1", "bacde", ["paris", "1889"]),  # gemkr: b (1889) at rank 1; case_insensitive: b and a
    query("q2", "dcae", ["Yellow"]),  # answers are lower-cased: "yellow" in c (both); in e only case-insensitively
    query("q3", "dab", ["stripes tiger"]),  # a whole answer must be a substring: none
]


def test_relevance_case_modes():
    assert not is_relevant(PASSAGES["a"], ["paris"], "gemkr") and is_relevant(PASSAGES["a"], ["paris"], "case_insensitive")
    assert is_relevant(PASSAGES["c"], ["Yellow"], "gemkr")  # the answer is lower-cased in both modes
    assert not is_relevant(PASSAGES["e"], ["Yellow"], "gemkr") and is_relevant(PASSAGES["e"], ["Yellow"], "case_insensitive")
    with pytest.raises(RetrievalMetricError, match="unknown case mode 'upper'"):
        is_relevant("x", ["x"], "upper")


def test_gemkr_mode_fixture():
    records, summary = evaluate_retrieval(FIXTURE, ks=(2, 5), case_mode="gemkr")
    assert [r["relevant"] for r in records] == [[True, False, False, False, False], [False, True, False, False],
                                                [False, False, False]]
    assert summary["P@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert summary["P@5"] == pytest.approx((1 / 5 + 1 / 5 + 0) / 3)
    assert summary["R@2"] == pytest.approx(2 / 3) and summary["R@5"] == pytest.approx(2 / 3)
    assert summary["MRR@5"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert summary["n_queries"] == 3 and summary["case_mode"] == "gemkr"


def test_case_insensitive_mode_fixture():
    records, summary = evaluate_retrieval(FIXTURE, ks=(1, 5), case_mode="case_insensitive")
    assert records[0]["relevant"] == [True, True, False, False, False]
    assert records[1]["relevant"] == [False, True, False, True]
    assert summary["P@1"] == pytest.approx(1 / 3)
    assert summary["P@5"] == pytest.approx((2 / 5 + 2 / 5 + 0) / 3)
    assert summary["R@1"] == pytest.approx(1 / 3) and summary["R@5"] == pytest.approx(2 / 3)
    assert summary["MRR@5"] == pytest.approx((1 + 1 / 2) / 3)


def test_single_list_metrics_and_bad_k():
    flags = [False, False, True, True]
    assert precision_at_k(flags, 3) == pytest.approx(1 / 3) and precision_at_k(flags, 10) == pytest.approx(0.2)
    assert hit_at_k(flags, 2) == 0.0 and hit_at_k(flags, 3) == 1.0
    assert mrr_at_k(flags, 4) == pytest.approx(1 / 3) and mrr_at_k(flags, 2) == 0.0
    with pytest.raises(RetrievalMetricError, match="cut-off k must be positive"):
        precision_at_k(flags, 0)


def test_writer_outputs_per_query_and_summary(tmp_path):
    records, summary = evaluate_retrieval(FIXTURE, ks=(5,), case_mode="case_insensitive")
    per_query, summary_path = write_retrieval_results(records, summary, tmp_path / "out")
    loaded = json.loads(per_query.read_text())
    assert [r["query_id"] for r in loaded] == ["q1", "q2", "q3"] and loaded[0]["retrieved"] == list("bacde")
    assert json.loads(summary_path.read_text())["R@5"] == pytest.approx(2 / 3)


def test_one_evaluation_keeps_both_modes_per_query_and_in_the_summary():
    """Headline case-insensitive, gemkr beside it: the same flags and means as the two single-mode runs above."""
    records, summary = evaluate_retrieval(FIXTURE, ks=(1, 5), case_mode="case_insensitive",
                                          report_modes=("case_insensitive", "gemkr"))
    assert records[0]["relevant"] == [True, True, False, False, False]
    assert records[0]["by_case_mode"]["gemkr"]["relevant"] == [True, False, False, False, False]
    assert records[1]["by_case_mode"]["gemkr"]["P@5"] == pytest.approx(1 / 5)
    assert records[1]["by_case_mode"]["case_insensitive"]["P@5"] == pytest.approx(2 / 5) == records[1]["P@5"]
    assert summary["case_mode"] == "case_insensitive" and summary["P@5"] == pytest.approx((2 / 5 + 2 / 5) / 3)
    assert summary["by_case_mode"]["gemkr"]["P@5"] == pytest.approx((1 / 5 + 1 / 5) / 3)
    assert summary["by_case_mode"]["gemkr"]["MRR@5"] == pytest.approx((1 + 1 / 2) / 3)
    assert summary["by_case_mode"]["case_insensitive"]["R@1"] == pytest.approx(1 / 3)
