"""POPE scoring, the official way, with "yes" as the positive class.

Answer -> yes/no (as in the POPE paper's evaluator): keep the first sentence (text before the first
'.'), drop commas, split into words; the answer is "no" when the words contain "No", "not" or "no"
(whole words, case as written), otherwise "yes". Consequences, all on purpose:

- "No, there is not."  -> no   ("No" is a word)
- "I don't know"       -> yes  (no whole word "no"/"not"; SURf's substring test wrongly said no)
- "Yes."               -> yes
- "NO"                 -> yes  (the official word list is case-sensitive; kept for comparable numbers)
- "" (empty answer)    -> yes  (the official rule has no "no" word to find). Empty answers are also
                          counted in `num_empty` so a model that says nothing is visible in the report.

We split on any whitespace where the official code splits on single spaces; the two differ only for
answers holding newlines or tabs in the first sentence.
"""
from __future__ import annotations

from typing import Dict, Sequence

NEGATIVE_WORDS = ("No", "not", "no")


def answer_to_label(answer: str) -> str:
    """Map a free-form answer to "yes" or "no" by the official POPE rule (see module doc)."""
    first_sentence = answer.split(".")[0]
    words = first_sentence.replace(",", "").split()
    return "no" if any(w in NEGATIVE_WORDS for w in words) else "yes"


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def pope_metrics(answers: Sequence[str], labels: Sequence[str]) -> Dict[str, float]:
    """Accuracy, precision, recall, F1 (yes = positive) and yes-ratio of answers against yes/no labels."""
    if len(answers) != len(labels):
        raise ValueError(f"pope_metrics: {len(answers)} answers for {len(labels)} labels")
    bad = [lab for lab in labels if lab not in ("yes", "no")]
    if bad:
        raise ValueError(f"pope_metrics: labels must be 'yes' or 'no', got {bad[0]!r}")
    preds = [answer_to_label(a) for a in answers]
    tp = sum(p == "yes" and t == "yes" for p, t in zip(preds, labels))
    fp = sum(p == "yes" and t == "no" for p, t in zip(preds, labels))
    tn = sum(p == "no" and t == "no" for p, t in zip(preds, labels))
    fn = sum(p == "no" and t == "yes" for p, t in zip(preds, labels))
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio(tp + tn, len(labels)),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "yes_ratio": _ratio(tp + fp, len(labels)),
        "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "num": len(labels),
        "num_empty": sum(not a.strip() for a in answers),
    }
