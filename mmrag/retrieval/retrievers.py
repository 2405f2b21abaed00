"""Retrievers for knowledge questions, registered by name; each returns, per question,
{"rows": passage rows best first, ...extra fields kept in the per-query results}."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import torch
from tqdm import tqdm

from mmrag.common.registry import RETRIEVERS
from mmrag.retrieval.clue_scoring import make_clue_scorer


class _NoConstraint:
    """The unconstrained ablation: the decoder may write any token."""

    def reset(self) -> None:
        pass

    def __call__(self, input_ids, scores):
        return scores


def _question_samples(model, questions, ds_cfg, store) -> List[Dict[str, Any]]:
    from mmrag.datasets.knowledge import image_path, knowledge_prompt

    samples = []
    for q in questions:
        path = image_path(Path(ds_cfg.image_root), q["image"], ds_cfg.image_ext)
        sample = {"id": q["image"], "conversations": knowledge_prompt(q["input"]),
                  "pixel_values": model.image_processor(path)[None]}
        if store is not None:
            sample["regions"] = store.get(Path(path).stem)[None]
        samples.append(sample)
    return samples


@RETRIEVERS.register("generative")
def generative(model, questions, index, cfg, ds_cfg) -> List[Dict[str, Any]]:
    """GeMKR: diverse beam search writes clues (inside the corpus when constrained) -> passages."""
    from mmrag.datasets.knowledge import region_store
    from mmrag.retrieval.beam_decoders import BeamGraphWorkspace
    from mmrag.retrieval.constrained_decoding import CorpusConstrainedLogitsProcessor, group_beam_search

    ev = cfg.evaluation
    eos = model.tokenizer.eos_token_id
    processor = (CorpusConstrainedLogitsProcessor(index, eos, ev.min_clue_len, ev.max_clue_len)
                 if ev.constrained else _NoConstraint())
    scorer = make_clue_scorer(ev.scorer, **ev.scorer_options)
    store = region_store(ds_cfg, "eval") if model.region_prefix is not None else None
    model.eval()
    workspace = BeamGraphWorkspace()  # on a GPU: one CUDA graph capture per batch shape, not per batch
    out = []
    for start in tqdm(range(0, len(questions), ev.batch_size), desc="retrieve (generative)"):
        batch = model.collate(_question_samples(model, questions[start:start + ev.batch_size], ds_cfg, store),
                              generation=True)
        with torch.no_grad():
            embeds = model.embed(batch["input_ids"], batch["pixel_values"], batch.get("regions"))
            clue_lists = group_beam_search(
                model.llm, embeds, processor, eos_token_id=eos, num_beams=ev.num_beams,
                num_beam_groups=ev.num_beam_groups, diversity_penalty=ev.diversity_penalty,
                length_penalty=ev.length_penalty, max_new_tokens=ev.max_clue_len + 1,
                num_return_sequences=ev.num_return_sequences, attention_mask=batch["attention_mask"].to(model.device),
                workspace=workspace)
        for clues in clue_lists:
            ranked = scorer(index, clues, ev.top_k)
            out.append({"rows": [p.row for p in ranked], "scores": [round(p.score, 4) for p in ranked],
                        "clues": [{"tokens": list(c.tokens), "text": model.tokenizer.decode(list(c.tokens)),
                                   "score": round(c.score, 4)} for c in clues]})
    return out


@RETRIEVERS.register("bm25")
def bm25(model, questions, index, cfg, ds_cfg) -> List[Dict[str, Any]]:
    """BM25 (bm25s) over the passage texts with question + caption as the query."""
    import bm25s

    texts = [index.passage_text(r) for r in range(index.n_passages)]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    k = min(cfg.evaluation.top_k, len(texts))
    rows, scores = retriever.retrieve(bm25s.tokenize([q["input"] for q in questions], stopwords="en",
                                                     show_progress=False), k=k, show_progress=False)
    return [{"rows": [int(r) for r in rr], "scores": [round(float(s), 4) for s in ss]} for rr, ss in zip(rows, scores)]
