"""Hallucination measured both ways: false premises rejected, true ones not; and MME's paired yes/no score.

LRV-style instructions (items with `polarity` positive | negative and `keywords`):
- an answer *rejects the premise* when its first clause (the text before the first . ; : ! ? or line
  break) holds a negation or refusal word (`REJECTION_WORDS`: no, not, none, false, wrong, isn't, ...).
  "No." and "There is no rock in the image; ..." reject; "Yes, there is a tree." does not.
- false-premise rejection rate: share of negative instructions whose answer rejects the premise;
  `negative_corrected`: rejects AND names the true value (the item's keywords, where it has any).
- over-rejection rate: share of positive instructions whose answer rejects; positive accuracy: the
  answer does not reject and holds every keyword (whole words, case-insensitive).
- `robust_score` = (rejection rate + (1 - over-rejection rate)) / 2: a model that says "no" to
  everything scores 0.5, as does one that never says no; only telling them apart scores above.

MME (items with `subtask` and `pair`, the image its two questions share):
- an answer maps to yes / no / other as MME's evaluation tool does: lower-cased and stripped; "yes" or
  "no" as it is; otherwise "yes" if the first 4 characters contain "yes", else "no" if they contain
  "no", else "other" (always wrong).
- per subtask: acc = share of questions right, acc+ = share of images with both questions right,
  score = 100 * (acc + acc+) (at most 200); the total is the sum over subtasks, as MME reports
  (perception = its 10 perception subtasks, cognition = its 4 cognition subtasks, where present).
"""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Dict, List, Sequence, Tuple

from mmrag.common.registry import SCORERS

Item = Dict[str, Any]
REJECTION_WORDS = ("no", "not", "none", "nothing", "nobody", "never", "false", "wrong", "incorrect", "untrue",
                   "cannot", "can't", "isn't", "aren't", "doesn't", "don't", "didn't", "wasn't", "weren't",
                   "there's no", "n't")
_REJECTION = re.compile(r"(?<![\w'])(?:" + "|".join(re.escape(w) for w in REJECTION_WORDS if w != "n't")
                        + r")(?![\w'])|\w+n't\b", re.IGNORECASE)
_FIRST_CLAUSE = re.compile(r"[.;:!?\n]")
MME_PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark",
                  "artwork", "OCR")
MME_COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


# ----------------------------------------------------------------------------- LRV instructions
def first_clause(answer: str) -> str:
    return _FIRST_CLAUSE.split(answer.strip(), maxsplit=1)[0]


def rejects_premise(answer: str) -> bool:
    """True when the answer's first clause says no / not / false / wrong ... (see the module doc)."""
    return bool(_REJECTION.search(first_clause(answer)))


def has_keywords(answer: str, keywords: Sequence[str]) -> bool:
    """Every keyword occurs in the answer as whole words, ignoring case."""
    text = answer.lower()
    return all(re.search(r"(?<!\w)" + re.escape(k.lower()) + r"(?!\w)", text) for k in keywords)


def _rate(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def lrv_item_scores(predictions: Sequence[str], items: Sequence[Item]) -> List[Dict[str, float]]:
    """Per item: rejected (0/1), and `correct`: negatives rejected, positives accurate."""
    out = []
    for prediction, item in zip(predictions, items):
        rejected = rejects_premise(prediction)
        keywords = item.get("keywords") or []
        if item["polarity"] == "negative":
            out.append({"rejected": float(rejected), "correct": float(rejected),
                        "corrected": float(rejected and has_keywords(prediction, keywords)) if keywords else None})
        elif item["polarity"] == "positive":
            out.append({"rejected": float(rejected), "correct": float(not rejected and has_keywords(prediction, keywords)),
                        "corrected": None})
        else:
            raise ValueError(f"item {item.get('question_id')}: polarity must be positive or negative, got {item['polarity']!r}")
    return out


def lrv_metrics(predictions: Sequence[str], items: Sequence[Item]) -> Dict[str, Any]:
    """False-premise rejection, over-rejection, positive accuracy, robust score, and each per task."""
    if len(predictions) != len(items):
        raise ValueError(f"lrv_metrics: {len(predictions)} predictions for {len(items)} items")
    scores = lrv_item_scores(predictions, items)
    neg = [s for s, it in zip(scores, items) if it["polarity"] == "negative"]
    pos = [s for s, it in zip(scores, items) if it["polarity"] == "positive"]
    rejection, over = _rate([s["rejected"] for s in neg]), _rate([s["rejected"] for s in pos])
    by_task: Dict[str, Dict[str, float]] = {}
    for task in sorted({it["task"] for it in items}):
        chosen = [s for s, it in zip(scores, items) if it["task"] == task]
        by_task[task] = {"correct": _rate([s["correct"] for s in chosen]),
                         "rejected": _rate([s["rejected"] for s in chosen]), "num": len(chosen)}
    corrected = [s["corrected"] for s in neg if s["corrected"] is not None]
    return {"false_premise_rejection": rejection, "over_rejection": over,
            "positive_accuracy": _rate([s["correct"] for s in pos]), "negative_corrected": _rate(corrected),
            "robust_score": (rejection + 1.0 - over) / 2 if neg and pos else 0.0,
            "num_negative": len(neg), "num_positive": len(pos), "num": len(items),
            "num_empty": sum(not p.strip() for p in predictions), "by_task": by_task}


# ----------------------------------------------------------------------------- MME
def mme_answer(answer: str) -> str:
    """yes / no / other by MME's rule (see the module doc)."""
    text = answer.strip().lower()
    if text in ("yes", "no"):
        return text
    prefix = text[:4]
    return "yes" if "yes" in prefix else "no" if "no" in prefix else "other"


def mme_metrics(predictions: Sequence[str], items: Sequence[Item]) -> Tuple[List[float], Dict[str, Any]]:
    """Per-question correctness and {subtasks: {acc, acc_plus, score, num_images}, total, ...}."""
    if len(predictions) != len(items):
        raise ValueError(f"mme_metrics: {len(predictions)} predictions for {len(items)} items")
    correct = [float(mme_answer(p) == str(it["answer"]).strip().lower()) for p, it in zip(predictions, items)]
    by_pair: Dict[str, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(list))
    for c, item in zip(correct, items):
        by_pair[item["subtask"]][item["pair"]].append(c)
    subtasks = {}
    for subtask in sorted(by_pair):
        pairs = by_pair[subtask]
        answers = [c for values in pairs.values() for c in values]
        acc, acc_plus = _rate(answers), _rate([float(all(v)) for v in pairs.values()])
        subtasks[subtask] = {"acc": acc, "acc_plus": acc_plus, "score": 100.0 * (acc + acc_plus),
                             "num_images": len(pairs), "num": len(answers)}
    metrics = {"subtasks": subtasks, "total": sum(s["score"] for s in subtasks.values()),
               "perception": sum(subtasks[s]["score"] for s in MME_PERCEPTION if s in subtasks),
               "cognition": sum(subtasks[s]["score"] for s in MME_COGNITION if s in subtasks),
               "acc": _rate(correct), "acc_plus": _rate([s["acc_plus"] for s in subtasks.values()]),
               "other": sum(mme_answer(p) == "other" for p in predictions), "num": len(items),
               "yes_ratio": _rate([float(mme_answer(p) == "yes") for p in predictions])}
    return correct, metrics


# ----------------------------------------------------------------------------- scorers of vqa_eval
@SCORERS.register("lrv")
class LrvScorer:
    """Items: `polarity`, `task`, `keywords` (the world's lrv/items_{split}.jsonl, read as vqa_jsonl)."""

    chart = ("false_premise_rejection", "over_rejection", "positive_accuracy")

    def score(self, predictions: Sequence[str], items: Sequence[Item]):
        return [s["correct"] for s in lrv_item_scores(predictions, items)], lrv_metrics(predictions, items)


@SCORERS.register("mme")
class MmeScorer:
    """Items: `answer` (yes/no), `subtask`, `pair` (lrv_formats.read_mme, or lrv/mme_test.jsonl)."""

    chart = ("acc", "acc_plus", "yes_ratio")

    def score(self, predictions: Sequence[str], items: Sequence[Item]):
        return mme_metrics(predictions, items)
