"""SURf training-data construction, one pure function per step (the CLI wraps each in a stage).

1. `split_turns`        multi-turn LLaVA samples -> single-turn questions
2. `retrieve`           each question's image -> top-k similar database images (a Retriever,
                        self excluded; absolute image paths)
3. `initial_answers`    the frozen model answers with the question image alone
4. `expand_pairs` + `reanswer_pairs`   it answers again once per retrieved item
                        (retrieved image first, question image second)
5. `evaluate_pairs`     tool evaluation: label 1 when that retrieved item helped
6. `group_by_question`  pair rows -> one record per question (all ranks present)
7. `select_pairs` + `make_training_sample`   questions with mixed labels -> the most similar
                        positive and the most similar negative item -> a LLaVA multi-image sample

Labels (step 5): for multiple-choice and short answers, 1 when the re-answer matches the ground
truth; for open-ended answers, 1 when the re-answer is more similar to the ground truth than the
initial answer was (by the configured similarity scorer, whose name is stored in every row).
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mmrag.common.errors import DataFormatError
from mmrag.metrics.answers import answer_type, exact_match
from mmrag.retrievers.base import Retriever
from mmrag.surf.answerer import Answerer
from mmrag.surf.prompts import IMAGE_TOKEN, format_rag_prompt, reanswer_prompt, retrieved_item, strip_image_token
from mmrag.surf.tool_eval import SimilarityScorer

Record = Dict[str, Any]


class ConstructionError(DataFormatError):
    """Malformed input for a construction step: names the sample / question and what was expected."""


# ----------------------------------------------------------------------------- 1. split
def split_turns(samples: Sequence[Record]) -> List[Record]:
    """One record per (human, gpt) turn pair of each LLaVA sample that has an image.

    qid = "<sample id>#<turn number>"; the question loses its `<image>` placeholder.
    """
    out = []
    for n, sample in enumerate(samples):
        if not sample.get("image"):
            continue
        turns = sample.get("conversations") or []
        if len(turns) % 2 or any(t.get("from") != ("human" if i % 2 == 0 else "gpt") for i, t in enumerate(turns)):
            raise ConstructionError(f"sample {n} (id {sample.get('id')!r}): conversations must alternate human/gpt")
        for t in range(0, len(turns), 2):
            question, answer = strip_image_token(turns[t]["value"]), turns[t + 1]["value"].strip()
            out.append({
                "qid": f"{sample.get('id', n)}#{t // 2}",
                "image": sample["image"],
                "question": question,
                "answer": answer,
                "answer_type": answer_type(question, answer),
            })
    return out


# ----------------------------------------------------------------------------- 2. retrieve
def retrieve(records: Sequence[Record], retriever: Retriever, k: int, image_root: Optional[str | Path] = None) -> List[Record]:
    """Attach `retrieved` = [{"id", "image" (absolute), "caption", "score"}] (best first) to each record.

    Each question's image (relative to `image_root` when given) is the query; the retriever excludes
    the query itself (`exclude="self"`: its database id and near-identical images).
    """
    root = Path(image_root) if image_root else None
    queries = [str(root / r["image"]) if root else str(r["image"]) for r in records]
    hits = retriever.retrieve(queries, k, exclude="self")
    return [{**r, "retrieved": [retrieved_item(h) for h in found]} for r, found in zip(records, hits)]


# ----------------------------------------------------------------------------- 3. initial answers
def initial_answers(records: Sequence[Record], answerer: Answerer) -> List[Record]:
    """The model's answer from the question image alone (`initial_answer`)."""
    requests = [{"prompt": f"{IMAGE_TOKEN}\n{r['question']}", "images": [r["image"]]} for r in records]
    answers = answerer.answer(requests)
    return [{**r, "initial_answer": a} for r, a in zip(records, answers)]


# ----------------------------------------------------------------------------- 4. re-answers
def expand_pairs(records: Sequence[Record]) -> List[Record]:
    """One row per (question, retrieved item); `rank` 0 = the most similar item."""
    pairs = []
    for r in records:
        base = {key: value for key, value in r.items() if key != "retrieved"}
        for rank, item in enumerate(r.get("retrieved") or []):
            pairs.append({**base, "rank": rank, "num_retrieved": len(r["retrieved"]), "item": item})
    return pairs


def pair_key(row: Record) -> str:
    return f"{row['qid']}|{row['rank']}"


def reanswer_pairs(pairs: Sequence[Record], answerer: Answerer) -> List[Record]:
    """The model's answer shown the retrieved image, then the question image (`reanswer`)."""
    requests = [{"prompt": reanswer_prompt(p["question"]), "images": [p["item"]["image"], p["image"]]} for p in pairs]
    answers = answerer.answer(requests)
    return [{**p, "reanswer": a} for p, a in zip(pairs, answers)]


# ----------------------------------------------------------------------------- 5. tool evaluation
def evaluate_pairs(pairs: Sequence[Record], scorer: SimilarityScorer) -> List[Record]:
    """Add `label` (1 = the retrieved item helped) and `evaluator` (match / the scorer's name)."""
    open_idx = [i for i, p in enumerate(pairs) if p["answer_type"] == "open"]
    re_sim = scorer.score([pairs[i]["reanswer"] for i in open_idx], [pairs[i]["answer"] for i in open_idx])
    init_sim = scorer.score([pairs[i]["initial_answer"] for i in open_idx], [pairs[i]["answer"] for i in open_idx])
    sims = {i: (r, s) for i, r, s in zip(open_idx, re_sim, init_sim)}
    out = []
    for i, p in enumerate(pairs):
        if i in sims:
            re_score, init_score = sims[i]
            out.append({**p, "label": int(re_score > init_score), "evaluator": scorer.name,
                        "reanswer_sim": float(re_score), "initial_sim": float(init_score)})
        else:
            out.append({**p, "label": int(exact_match(p["reanswer"], p["answer"], p["answer_type"])), "evaluator": "match"})
    return out


# ----------------------------------------------------------------------------- 6. group
def group_by_question(pairs: Sequence[Record]) -> List[Record]:
    """Pair rows -> per question {qid, image, question, answer, answer_type, initial_answer, items}
    with items ordered by rank; every rank 0..num_retrieved-1 must be present exactly once."""
    groups: Dict[str, Record] = {}
    for p in pairs:
        group = groups.setdefault(p["qid"], {key: p[key] for key in ("qid", "image", "question", "answer", "answer_type", "initial_answer", "num_retrieved")} | {"items": []})
        group["items"].append({**p["item"], "rank": p["rank"], "reanswer": p["reanswer"], "label": p["label"], "evaluator": p["evaluator"]})
    for qid, group in groups.items():
        group["items"].sort(key=lambda it: it["rank"])
        ranks = [it["rank"] for it in group["items"]]
        if ranks != list(range(group["num_retrieved"])):
            raise ConstructionError(f"question {qid}: re-answers for ranks {ranks}, expected 0..{group['num_retrieved'] - 1}")
    return list(groups.values())


# ----------------------------------------------------------------------------- 7. select + write
def choose_pair(group: Record) -> Optional[Dict[str, Record]]:
    """The highest-scoring positive and highest-scoring negative item, or None unless labels are mixed."""
    positives = [it for it in group["items"] if it["label"] == 1]
    negatives = [it for it in group["items"] if it["label"] == 0]
    if not positives or not negatives:
        return None
    best = lambda items: max(items, key=lambda it: (it["score"], -it["rank"]))  # noqa: E731  ties -> better rank
    return {"positive": best(positives), "negative": best(negatives)}


def make_training_sample(group: Record, pair: Dict[str, Record], rng: random.Random) -> Record:
    """A LLaVA multi-image sample: [positive, negative] in random order, then the question image."""
    items = [{**pair["positive"], "polarity": "positive"}, {**pair["negative"], "polarity": "negative"}]
    rng.shuffle(items)
    rag = format_rag_prompt(group["question"], group["image"], items)
    return {
        "id": group["qid"],
        "image": rag.images,
        "conversations": [{"from": "human", "value": rag.prompt}, {"from": "gpt", "value": group["answer"]}],
        "retrieval": [
            {"id": it["id"], "image": it["image"], "caption": it.get("caption", ""), "score": it["score"],
             "label": it["polarity"], "reanswer": it["reanswer"]}
            for it in items
        ],
    }


def select_pairs(groups: Sequence[Record], max_samples: Optional[int] = 2000, seed: int = 0) -> List[Record]:
    """Training samples for the groups with mixed labels (at most `max_samples`, a seeded random
    subset kept in input order). The positive/negative order is shuffled per question, seeded."""
    chosen = [(g, pair) for g in groups if (pair := choose_pair(g)) is not None]
    if max_samples is not None and len(chosen) > max_samples:
        keep = set(random.Random(seed).sample(range(len(chosen)), max_samples))
        chosen = [c for i, c in enumerate(chosen) if i in keep]
    return [make_training_sample(g, pair, random.Random(f"{seed}:{g['qid']}")) for g, pair in chosen]
