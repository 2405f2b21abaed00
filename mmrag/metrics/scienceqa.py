"""ScienceQA scoring: the answer letter of a generated QCM-LEPA response and accuracy by context type.

A QCM-LEPA response ends with "ANSWER: X." (X an option letter). `extract_answer` applies the
pattern `ANSWER: ([A-Z]).` (as LLaVA's ScienceQA evaluation does, the final `.` matches any
character); exactly one match gives the letter. A response that is nothing but one option letter
("B", "(B)", "B.") is accepted too. Anything else is a failed extraction and counts as wrong.

ScienceQA reports accuracy by context type, and the types overlap: IMG = questions with an image,
TXT = questions with a text context (a non-empty hint), NO = neither. A question with both an
image and a hint counts in IMG and in TXT. Items carry `has_image` and `has_text` for that split.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmrag.common.registry import SCORERS

ANSWER_PATTERN = re.compile(r"ANSWER: ([A-Z]).")
_BARE_LETTER = re.compile(r"^\(?([A-Z])\)?\.?$")
CONTEXT_TYPES = ("IMG", "TXT", "NO")

Item = Dict[str, Any]


def letters(n: int) -> List[str]:
    """The first `n` option letters: A, B, C, ..."""
    return [chr(ord("A") + i) for i in range(n)]


def extract_answer(text: str, n_options: Optional[int] = None) -> Optional[str]:
    """The letter a response picks, or None (no single `ANSWER: X.` and not a bare letter).
    With `n_options`, a letter beyond the options is None too."""
    found = ANSWER_PATTERN.findall(text + " ")  # the pattern's last `.` needs a character after X
    letter = found[0] if len(found) == 1 else None
    if letter is None:
        bare = _BARE_LETTER.match(text.strip())
        letter = bare.group(1) if bare else None
    if letter is not None and n_options is not None and letter not in letters(n_options):
        return None
    return letter


def context_types(item: Item) -> Tuple[str, ...]:
    """The ScienceQA context types of an item: IMG and/or TXT, or NO."""
    kinds = tuple(k for k, flag in (("IMG", item.get("has_image")), ("TXT", item.get("has_text"))) if flag)
    return kinds or ("NO",)


def scienceqa_accuracy(scores: Sequence[float], items: Sequence[Item]) -> Dict[str, Any]:
    """{"accuracy", "num", "by_context": {IMG|TXT|NO: {"accuracy", "num"}}} (types overlap, see above)."""
    by_context: Dict[str, Any] = {}
    for kind in CONTEXT_TYPES:
        hits = [s for s, it in zip(scores, items) if kind in context_types(it)]
        by_context[kind] = {"accuracy": sum(hits) / len(hits) if hits else None, "num": len(hits)}
    return {"accuracy": sum(scores) / len(scores) if scores else 0.0, "num": len(scores), "by_context": by_context}


@SCORERS.register("scienceqa")
class ScienceQAScorer:
    """Item keys: "answer" (the gold letter), "choices" (the option texts), "has_image", "has_text"."""

    chart = ("accuracy",)

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Tuple[List[float], Dict[str, Any]]:
        scores = [float(extract_answer(p, len(it["choices"])) == it["answer"]) for p, it in zip(predictions, items)]
        return scores, scienceqa_accuracy(scores, items)
