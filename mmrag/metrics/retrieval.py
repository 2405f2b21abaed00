"""Retrieval metrics with pseudo-relevance, as in OKVQA-GS112K (VRR) and GeMKR.

A passage is relevant to a query when it contains any gold answer as a substring. Case modes:
- "case_insensitive": passage and answers both lower-cased (the rule of VRR's own evaluator); the
  headline on the synthetic world, whose answers are proper nouns ("Pellumbra", "the Quessa Isles");
- "gemkr": the passage as is (case-sensitive), answers lower-cased (GeMKR's evaluation code). On
  OKVQA, whose answers are lower-case words, the two rarely differ; on the world, "gemkr" marks a
  passage that states "Pellumbra" irrelevant to the answer "Pellumbra".
`evaluate_retrieval` scores one headline mode and, beside it, every mode of `report_modes`
(per-query relevance and metrics under `by_case_mode`), so one evaluation serves both tables.

Per query and cut-off k: P@k = relevant passages among the top k / k (a short list still divides
by k), R@k (`hit_at_k`) = 1 if any of the top k is relevant else 0 (with pseudo-relevance the number of relevant
passages in the corpus is unknown, so recall is the hit rate), MRR@k = 1 / rank of the first
relevant passage within the top k, else 0. The summary averages over queries.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple
from mmrag.common.errors import DataFormatError

CASE_MODES = ("case_insensitive", "gemkr")


class RetrievalMetricError(DataFormatError):
    """Bad metric input: unknown case mode, non-positive k, mismatched lists."""


@dataclass
class RetrievalQuery:
    """One evaluated query: the retrieved passages (ids and texts, best first) and the gold answers."""

    query_id: str
    passage_ids: List[str]
    passage_texts: List[str]
    answers: List[str]
    extra: Dict[str, object] = field(default_factory=dict)


def is_relevant(passage: str, answers: Sequence[str], case_mode: str = "gemkr") -> bool:
    """Pseudo-relevance: does `passage` contain any of `answers` (compared per `case_mode`)?"""
    if case_mode not in CASE_MODES:
        raise RetrievalMetricError(f"unknown case mode {case_mode!r}; expected one of {CASE_MODES}")
    text = passage.lower() if case_mode == "case_insensitive" else passage
    return any(answer and answer.lower() in text for answer in answers)


def precision_at_k(relevant: Sequence[bool], k: int) -> float:
    _check_k(k)
    return sum(bool(r) for r in relevant[:k]) / k


def hit_at_k(relevant: Sequence[bool], k: int) -> float:
    """1 if any of the top k is relevant, else 0: the "R@k" of the reports (see the module doc).
    (`mmrag.retrieval.clip_embedder.recall_at_k` is the paired-item recall of a score matrix.)"""
    _check_k(k)
    return 1.0 if any(relevant[:k]) else 0.0


def mrr_at_k(relevant: Sequence[bool], k: int) -> float:
    _check_k(k)
    for rank, rel in enumerate(relevant[:k], start=1):
        if rel:
            return 1.0 / rank
    return 0.0


def _check_k(k: int) -> None:
    if k <= 0:
        raise RetrievalMetricError(f"cut-off k must be positive, got {k}")


def _metrics(relevant: Sequence[bool], ks: Sequence[int]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for k in ks:
        out[f"P@{k}"] = precision_at_k(relevant, k)
        out[f"R@{k}"] = hit_at_k(relevant, k)
        out[f"MRR@{k}"] = mrr_at_k(relevant, k)
    return out


def evaluate_query(query: RetrievalQuery, ks: Sequence[int] = (5, 10), case_mode: str = "gemkr",
                   report_modes: Sequence[str] = ()) -> Dict[str, object]:
    """Per-query record: retrieved ids, relevance flags and every metric at every k (headline
    `case_mode`), and under `by_case_mode` the flags and metrics of each of `report_modes`."""
    if len(query.passage_ids) != len(query.passage_texts):
        raise RetrievalMetricError(f"query {query.query_id}: {len(query.passage_ids)} passage ids but "
                                   f"{len(query.passage_texts)} passage texts")
    flags = {mode: [is_relevant(text, query.answers, mode) for text in query.passage_texts]
             for mode in dict.fromkeys([case_mode, *report_modes])}
    record: Dict[str, object] = {"query_id": query.query_id, "retrieved": list(query.passage_ids),
                                 "relevant": flags[case_mode], "answers": list(query.answers), **query.extra}
    record.update(_metrics(flags[case_mode], ks))
    if report_modes:
        record["by_case_mode"] = {mode: {"relevant": flags[mode], **_metrics(flags[mode], ks)} for mode in report_modes}
    return record


def _means(records: Sequence[Dict[str, object]], ks: Sequence[int]) -> Dict[str, float]:
    names = [f"{m}@{k}" for k in ks for m in ("P", "R", "MRR")]
    return {name: sum(r[name] for r in records) / len(records) if records else 0.0 for name in names}


def evaluate_retrieval(queries: Iterable[RetrievalQuery], ks: Sequence[int] = (5, 10), case_mode: str = "gemkr",
                       report_modes: Sequence[str] = ()) -> Tuple[List[Dict[str, object]], Dict[str, object]]:
    """(per-query records, summary of means over queries) for P@k, R@k and MRR@k at every k, in the
    headline `case_mode`; the summary's `by_case_mode` holds the same means for each of `report_modes`."""
    records = [evaluate_query(q, ks, case_mode, report_modes) for q in queries]
    summary: Dict[str, object] = {"n_queries": len(records), "case_mode": case_mode, "ks": list(ks), **_means(records, ks)}
    if report_modes:
        summary["by_case_mode"] = {mode: _means([r["by_case_mode"][mode] for r in records], ks) for mode in report_modes}
    return records, summary


def write_retrieval_results(records: Sequence[Dict[str, object]], summary: Dict[str, object],
                            out_dir: Path, prefix: str = "retrieval") -> Tuple[Path, Path]:
    """Write `<prefix>_per_query.json` and `<prefix>_summary.json` into `out_dir`; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_query, summary_path = out_dir / f"{prefix}_per_query.json", out_dir / f"{prefix}_summary.json"
    per_query.write_text(json.dumps(list(records), indent=1, ensure_ascii=False))
    summary_path.write_text(json.dumps(summary, indent=1))
    return per_query, summary_path
