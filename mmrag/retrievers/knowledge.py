"""Knowledge retrievers (question + image -> corpus passages), registered by name.

- `generative` (GeMKR): the model writes clues by diverse beam search (inside the corpus when
  constrained) and a clue scorer maps them to passages; the clues are kept in each query's
  `Hits.meta["clues"]`.
- `bm25` (bm25s): question + caption against the passage texts; the image is not used.

Each hit is a passage: id = passage id, text = passage text, meta = {"row": corpus row}. Built by
`build_retriever(name, cfg, model=..., processor=..., index=..., ds_cfg=...)` where `cfg` is the
whole experiment config (its `evaluation:` section holds the decoding options).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch
from tqdm import tqdm

from mmrag.common.registry import RETRIEVERS
from mmrag.retrieval.clue_scoring import make_clue_scorer
from mmrag.retrievers.base import Hit, Hits, Query, check_exclude, drop_self


def passage_hit(index, row: int, score: float) -> Hit:
    return Hit(str(index.passage_id(row)), float(score), None, index.passage_text(row), {"row": int(row)})


def knowledge_queries(questions: Sequence[Dict[str, Any]], ds_cfg) -> List[Query]:
    """Knowledge questions {question_id?, input, image} -> queries with absolute-or-rooted image paths."""
    from mmrag.datasets.knowledge import image_path

    return [Query(str(q.get("question_id", i)), q["input"], image_path(Path(ds_cfg.image_root), q["image"], ds_cfg.image_ext))
            for i, q in enumerate(questions)]


class _NoConstraint:
    """The unconstrained ablation: the decoder may write any token."""

    def reset(self) -> None:
        pass

    def __call__(self, input_ids, scores):
        return scores


@RETRIEVERS.register("generative")
class GenerativeRetriever:
    """GeMKR: diverse beam search writes clues (inside the corpus when constrained) -> passages."""

    def __init__(self, model, processor, index, ev, region_store=None) -> None:
        self.model, self.processor, self.index, self.ev, self.store = model, processor, index, ev, region_store

    @classmethod
    def from_config(cls, cfg, *, model, processor, index, ds_cfg, **_: Any) -> "GenerativeRetriever":
        from mmrag.datasets.knowledge import region_store

        store = region_store(ds_cfg, "eval") if model.region_prefix is not None else None
        return cls(model, processor, index, cfg.evaluation, store)

    def _samples(self, queries: Sequence[Query]) -> List[Dict[str, Any]]:
        from mmrag.datasets.knowledge import knowledge_prompt

        samples = []
        for q in queries:
            sample = {"id": q.id, "conversations": knowledge_prompt(q.text),
                      "pixel_values": self.processor.image_processor(q.image)[None]}
            if self.store is not None:
                sample["regions"] = self.store.get(Path(q.image).stem)[None]
            samples.append(sample)
        return samples

    def retrieve(self, queries: Sequence[Query], k: int, exclude: str = "self") -> List[Hits]:
        from mmrag.retrieval.beam_decoders import BeamGraphWorkspace
        from mmrag.retrieval.device_constraint import make_corpus_constraint
        from mmrag.retrieval.group_beam_search import group_beam_search

        check_exclude(exclude)
        ev, model, tokenizer = self.ev, self.model, self.processor.tokenizer
        eos = tokenizer.eos_token_id
        backend = getattr(ev, "constraint_backend", "auto")
        constraint = (make_corpus_constraint(self.index, eos, ev.min_clue_len, ev.max_clue_len, backend=backend,
                                             device=model.device) if ev.constrained else _NoConstraint())
        scorer = make_clue_scorer(ev.scorer, **ev.scorer_options)
        model.eval()
        workspace = BeamGraphWorkspace()  # on a GPU: one CUDA graph capture per batch shape, not per batch
        out: List[Hits] = []
        for start in tqdm(range(0, len(queries), ev.batch_size), desc="retrieve (generative)"):
            chunk = queries[start:start + ev.batch_size]
            batch = self.processor.collate(self._samples(chunk), generation=True)
            with torch.no_grad():
                embeds = model.embed(batch["input_ids"], batch["pixel_values"], batch.get("regions"))
                clue_lists = group_beam_search(
                    model.llm, embeds, constraint, eos_token_id=eos, num_beams=ev.num_beams,
                    num_beam_groups=ev.num_beam_groups, diversity_penalty=ev.diversity_penalty,
                    length_penalty=ev.length_penalty, max_new_tokens=ev.max_clue_len + 1,
                    num_return_sequences=ev.num_return_sequences,
                    attention_mask=batch["attention_mask"].to(model.device), workspace=workspace)
            for query, clues in zip(chunk, clue_lists):
                hits = [passage_hit(self.index, p.row, p.score) for p in scorer(self.index, clues, k)]
                details = [{"tokens": list(c.tokens), "text": tokenizer.decode(list(c.tokens)),
                            "score": round(c.score, 4)} for c in clues]
                out.append(Hits(drop_self(hits, query, exclude), {"clues": details}))
        return out


@RETRIEVERS.register("bm25")
class BM25Retriever:
    """BM25 (bm25s, English stop words) over the passage texts; the query is its text."""

    def __init__(self, index) -> None:
        import bm25s

        self.index = index
        texts = [index.passage_text(r) for r in range(index.n_passages)]
        self.bm25 = bm25s.BM25()
        self.bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)

    @classmethod
    def from_config(cls, cfg, *, index, **_: Any) -> "BM25Retriever":
        return cls(index)

    def retrieve(self, queries: Sequence[Query], k: int, exclude: str = "self") -> List[Hits]:
        import bm25s

        check_exclude(exclude)
        k = min(k, self.index.n_passages)
        tokens = bm25s.tokenize([q.text for q in queries], stopwords="en", show_progress=False)
        rows, scores = self.bm25.retrieve(tokens, k=k, show_progress=False)
        return [Hits(drop_self([passage_hit(self.index, int(r), float(s)) for r, s in zip(rr, ss)], q, exclude))
                for q, rr, ss in zip(queries, rows, scores)]
