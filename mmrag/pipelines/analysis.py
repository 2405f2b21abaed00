"""Analyses behind the SURf report, computed from the data and the evaluation outputs.

The name-only rule answers a POPE question ("Is there a <name> in the image?") from the object's
NAME alone, never looking at the image, using training-split statistics only:

- for every name asked about in the training yes/no questions, count how often it was answered
  "yes" and "no"; the rule says "yes" iff yes(name) / (yes(name) + no(name)) >= 0.5 (a tie says yes);
- a name never asked about in training gets the overall majority answer of the training yes/no
  questions ("yes" iff the overall share of "yes" is >= 0.5).

Scored with the official POPE metric (mmrag.metrics.pope), it shows how far a model could get on a
split from the name prior alone; its agreement with a model's answers shows whether the model does.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from mmrag.common.jsonl import read_jsonl
from mmrag.metrics.pope import answer_to_label, pope_metrics

_QUESTION = re.compile(r"Is there (?:a|an) (.+?) in the image\?")


def object_name(question: str) -> Optional[str]:
    """'<image>\\nIs there a red ball in the image? Answer yes or no.' -> 'red ball' (None if not a POPE question)."""
    match = _QUESTION.search(question)
    return match.group(1).strip().lower() if match else None


def _gold(answer: str) -> Optional[str]:
    """'Yes.' / 'no' -> 'yes' / 'no'; anything else -> None (not a yes/no answer)."""
    word = answer.strip().rstrip(".").strip().lower()
    return word if word in ("yes", "no") else None


@dataclass
class NameOnlyRule:
    """The rule of the module doc, fitted on (name, gold yes/no) pairs of the training split."""

    counts: Dict[str, Counter] = field(default_factory=dict)
    overall: Counter = field(default_factory=Counter)

    @classmethod
    def fit(cls, conversations: Iterable[Mapping[str, Any]]) -> "NameOnlyRule":
        """Fit on LLaVA records: every human turn that is a POPE question followed by a yes/no answer."""
        rule = cls()
        for record in conversations:
            turns = record["conversations"]
            for question, answer in zip(turns[::2], turns[1::2]):
                name, gold = object_name(question["value"]), _gold(answer["value"])
                if name and gold:
                    rule.counts.setdefault(name, Counter())[gold] += 1
                    rule.overall[gold] += 1
        return rule

    def answer(self, question: str) -> str:
        name = object_name(question)
        seen = self.counts.get(name) if name else None
        yes, no = (seen["yes"], seen["no"]) if seen else (self.overall["yes"], self.overall["no"])
        return "yes" if yes >= no else "no"   # share of yes >= 0.5 (also when nothing was seen at all)


def name_only_scores(rule: NameOnlyRule, questions: Sequence[Mapping[str, Any]]) -> Dict[str, float]:
    """POPE metrics of the rule on POPE rows {text, label}."""
    return pope_metrics([rule.answer(q["text"]) for q in questions], [q["label"] for q in questions])


def agreement(rule: NameOnlyRule, questions: Sequence[Mapping[str, Any]], predictions: Sequence[str]) -> float:
    """Share of questions where the model's answer (POPE-mapped to yes/no) equals the rule's."""
    if len(questions) != len(predictions):
        raise ValueError(f"agreement: {len(predictions)} predictions for {len(questions)} questions")
    same = [rule.answer(q["text"]) == answer_to_label(p) for q, p in zip(questions, predictions)]
    return sum(same) / len(same) if same else 0.0


def name_only_table(rule: NameOnlyRule, questions_by_split: Mapping[str, Sequence[Mapping[str, Any]]],
                    predictions: Mapping[str, Mapping[str, Sequence[str]]]) -> List[str]:
    """Markdown rows: the rule's accuracy / F1 / yes-ratio per split, then its agreement with each model.

    `predictions`: row label -> split -> the model's answers to the same questions, in order.
    """
    splits = list(questions_by_split)
    lines = ["| | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    cells = []
    for split in splits:
        m = name_only_scores(rule, questions_by_split[split])
        cells.append(f"{100 * m['accuracy']:.1f} / {100 * m['f1']:.1f} / {100 * m['yes_ratio']:.1f}")
    lines.append("| name-only rule: accuracy / F1 / yes% | " + " | ".join(cells) + " |")
    for label, by_split in predictions.items():
        shares = [f"{100 * agreement(rule, questions_by_split[s], by_split[s]):.1f}" if s in by_split else "-"
                  for s in splits]
        lines.append(f"| agreement with {label}, % | " + " | ".join(shares) + " |")
    return lines


# ----------------------------------------------------------------------------- false "yes" by how often an object was seen
FREQUENCY_BINS = ((0, 0, "0"), (1, 9, "1-9"), (10, 49, "10-49"), (50, None, "50+"))


def training_image_counts(instances: Mapping[str, Any]) -> Dict[str, int]:
    """name (lower case) -> number of training images holding at least one box of it (COCO instances)."""
    names = {c["id"]: c["name"].lower() for c in instances["categories"]}
    images: Dict[str, set] = {}
    for box in instances["annotations"]:
        images.setdefault(names[box["category_id"]], set()).add(box["image_id"])
    return {name: len(ids) for name, ids in images.items()}


def false_yes_by_frequency(answers: Iterable[Mapping[str, Any]], counts: Mapping[str, int]) -> Dict[str, Dict[str, float]]:
    """Among the "no" questions of an answers file (vqa_eval's answers_<split>.jsonl rows: question,
    answer, prediction), how many the model answered "yes", binned by how many training images hold
    the asked object (FREQUENCY_BINS): {bin: {"false_yes", "questions", "rate"}}, bins in order."""
    table = {label: {"false_yes": 0, "questions": 0} for _, _, label in FREQUENCY_BINS}
    for row in answers:
        name = object_name(row["question"])
        if name is None or _gold(row["answer"]) != "no":
            continue
        seen = counts.get(name, 0)
        label = next(lab for lo, hi, lab in FREQUENCY_BINS if seen >= lo and (hi is None or seen <= hi))
        table[label]["questions"] += 1
        table[label]["false_yes"] += answer_to_label(row["prediction"]) == "yes"
    for cell in table.values():
        cell["rate"] = cell["false_yes"] / cell["questions"] if cell["questions"] else float("nan")
    return table


def correct_by_question(answers_file) -> Dict[Any, float]:
    """question_id -> 1.0 / 0.0 from the `correct` field of an evaluation's answers file (vqa_eval's
    answers_<split>.jsonl): what paired bootstrap intervals between two runs are computed over."""
    return {row["question_id"]: float(row["correct"]) for row in read_jsonl(answers_file)}
