"""Answer scorers of the `vqa_eval` task, registered in SCORERS by name.

A scorer turns the generated answers of one split into a per-item score ("correct": 1/0, or the
VQA accuracy in [0, 1]) and the split's metrics:

    scorer.score(predictions, items) -> (per-item scores, metrics)

Items are the reader's question dicts; each scorer names the keys it reads. `chart` lists the
metrics the task's bar chart shows. A new scorer (e.g. the GAVIE judge) registers a class with these
two members.

- `pope`: the official POPE rule (`mmrag.metrics.pope`); item "answer" is the yes/no label; metrics
  are exactly `pope_metrics`.
- `exact_match`: item "answer" + "answer_type" ('short' | 'mc'), `mmrag.metrics.answers.exact_match`.
- `vqa_accuracy`: item "answers" (the annotators' answers), min(1, matches / 3) after the VQA
  normalisation.
- `multiple_choice`: item "answer" (a letter) and optional "options" ({letter: text}); the letter the
  prediction picks (or the one option it names) must equal it (SEED-Bench / MMBench style).

Accuracy scorers report {"accuracy", "num", "by_family"}: by_family is the accuracy per question
family (the question's first two words: 'How many', 'What colour').
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from mmrag.common.registry import SCORERS
from mmrag.metrics.answers import choice_letter, exact_match, vqa_accuracy
from mmrag.metrics.pope import answer_to_label, pope_metrics

Item = Dict[str, Any]
Scored = Tuple[List[float], Dict[str, Any]]


def question_family(question: str) -> str:
    """A question's first two words ('How many', 'What colour'): its family in the report."""
    return " ".join(question.split()[:2])


def accuracy_metrics(scores: Sequence[float], items: Sequence[Item]) -> Dict[str, Any]:
    """Mean score overall and per question family."""
    by_family: Dict[str, Any] = {}
    for family in sorted({question_family(it["question"]) for it in items}):
        hits = [s for s, it in zip(scores, items) if question_family(it["question"]) == family]
        by_family[family] = {"accuracy": sum(hits) / len(hits), "num": len(hits)}
    return {"accuracy": sum(scores) / len(scores) if scores else 0.0, "num": len(scores), "by_family": by_family}


@SCORERS.register("pope")
class PopeScorer:
    chart = ("accuracy", "f1", "yes_ratio")

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        labels = [it["answer"] for it in items]
        scores = [float(answer_to_label(p) == lab) for p, lab in zip(predictions, labels)]
        return scores, pope_metrics(predictions, labels)


@SCORERS.register("exact_match")
class ExactMatchScorer:
    chart = ("accuracy",)

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        scores = [float(exact_match(p, it["answer"], it["answer_type"])) for p, it in zip(predictions, items)]
        return scores, accuracy_metrics(scores, items)


@SCORERS.register("vqa_accuracy")
class VqaAccuracyScorer:
    chart = ("accuracy",)

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        scores = [vqa_accuracy(p, it["answers"]) for p, it in zip(predictions, items)]
        return scores, accuracy_metrics(scores, items)


@SCORERS.register("multiple_choice")
class MultipleChoiceScorer:
    chart = ("accuracy",)

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        scores = [float(choice_letter(p, it.get("options")) == str(it["answer"]).strip())
                  for p, it in zip(predictions, items)]
        return scores, accuracy_metrics(scores, items)
