"""Knowledge retrieval (GeMKR): train on clue targets; evaluate P@k / R@k / MRR@k of the passages
that a retriever ranks for each test question. The retriever is chosen by `evaluation.method`:
`generative` (the model writes clues, constrained to the corpus or not, mapped to passages by a
registered clue scorer), or a baseline (`bm25`, `dense`) on the same questions and metrics.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List

from mmrag.common.errors import ConfigError
from mmrag.common.registry import TASKS
from mmrag.metrics.retrieval import CASE_MODES, RetrievalQuery, evaluate_retrieval, write_retrieval_results
from mmrag.retrievers.base import build_retriever
from mmrag.retrievers.knowledge import knowledge_queries
from mmrag.tasks.base import Task


@TASKS.register("knowledge_retrieval")
class KnowledgeRetrievalTask(Task):
    DEFAULTS = {
        "run": {},
        "evaluation": {
            "split": "test",
            "dataset": None,          # which datasets: entry holds questions/corpus/index (default: the first)
            "method": "generative",   # generative | bm25 | dense
            "constrained": True,
            "num_beams": 10,
            "num_beam_groups": 10,
            "diversity_penalty": 0.5,
            "length_penalty": 1.5,
            "num_return_sequences": 10,
            "min_clue_len": 2,
            "max_clue_len": 10,
            "constraint_backend": "auto",  # auto | host | device: corpus tables on the model's device (auto: on a GPU)
            "scorer": "seal",         # seal | first_hit | beam_score_sum
            "scorer_options": {},
            "top_k": 10,
            "ks": [1, 5, 10],
            "case_mode": "gemkr",     # headline relevance: gemkr (case-sensitive passages) | case_insensitive
            # every case mode is also scored and kept (per query and in the summary, `by_case_mode`)
            "batch_size": 8,
            "max_samples": None,
            "name": None,             # label of this run in tables (default: method)
            "dense": {"steps": 300, "batch_size": 32, "lr": 2e-3, "dim": 128},
        },
    }

    def build_model(self, cfg):
        if cfg.evaluation.method != "generative":
            return _NoModel(cfg)
        return super().build_model(cfg)

    def evaluate(self, model, cfg, out_dir) -> Dict[str, Any]:
        from mmrag.datasets.knowledge import load_corpus_index, read_split_questions

        ev = cfg.evaluation
        if ev.case_mode not in CASE_MODES:  # before any model or index is loaded
            raise ConfigError(f"evaluation.case_mode: expected one of {', '.join(CASE_MODES)}, got {ev.case_mode!r}")
        name = ev.dataset or next(iter(cfg.datasets))
        ds_cfg = cfg.datasets[name]
        questions = read_split_questions(ds_cfg, ev.split)[: ev.max_samples or None]
        processor = self.build_processor(cfg, model) if ev.method == "generative" else None
        tokenizer = processor.tokenizer if processor is not None else model.tokenizer
        index = load_corpus_index(ds_cfg, tokenizer)
        retriever = build_retriever(ev.method, cfg, model=model, processor=processor, tokenizer=tokenizer,
                                    index=index, ds_cfg=ds_cfg)
        start = time.time()
        rankings = retriever.retrieve(knowledge_queries(questions, ds_cfg), ev.top_k, exclude="none")
        seconds = time.time() - start
        queries = [
            RetrievalQuery(str(q.get("question_id", i)), [h.id for h in hits], [h.text for h in hits],
                           list(q["output"]), {"scores": [round(h.score, 4) for h in hits], **hits.meta})
            for i, (q, hits) in enumerate(zip(questions, rankings))
        ]
        records, summary = evaluate_retrieval(queries, tuple(ev.ks), ev.case_mode, report_modes=CASE_MODES)
        summary.update({"method": ev.name or ev.method, "seconds": round(seconds, 2),
                        "queries_per_s": round(len(questions) / max(seconds, 1e-9), 2)})
        if ev.method == "generative":
            summary["clues_in_corpus"] = _clue_occurrence(records, index)
        out_dir = Path(out_dir)
        write_retrieval_results(records, summary, out_dir)
        plot_hit_rate_curve(records, out_dir / "recall_at_k.png", ev.top_k, summary["method"])
        return summary


def _clue_occurrence(records: List[Dict[str, Any]], index) -> float:
    """Share of generated clues that occur verbatim in the corpus."""
    clues = [c["tokens"] for r in records for c in r.get("clues", [])]
    return sum(index.count(c) > 0 for c in clues) / max(1, len(clues))


def plot_hit_rate_curve(records: List[Dict[str, Any]], path: Path, top_k: int, label: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = list(range(1, top_k + 1))
    recall = [sum(any(r["relevant"][:k]) for r in records) / max(1, len(records)) for k in ks]
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot(ks, recall, marker="o", label=label)
    ax.set_xlabel("k"), ax.set_ylabel("R@k"), ax.set_ylim(0, 1), ax.grid(alpha=0.3), ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class _NoModel:
    """Baselines need no LLM, only its tokenizer (the corpus index is tokenised with it)."""

    def __init__(self, cfg) -> None:
        from mmrag.processors import load_tokenizer

        self.tokenizer = load_tokenizer(cfg.model.llm)

    def cuda(self):
        return self
