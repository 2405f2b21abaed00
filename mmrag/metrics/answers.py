"""Matching generated answers against ground truth: the one answer normalisation and the rules
built on it.

- `normalize_answer`: lower-case, punctuation -> spaces, articles a/an/the dropped, whitespace
  collapsed ('The Blue one.' -> 'blue one'). Used by exact match, token F1 and instruction tuning.
- `exact_match(prediction, truth, kind)`: for 'short' answers the normalised prediction equals the
  truth or contains it as whole words; for 'mc' the option letters agree.
- `option_letter`: the option letter an answer picks ("B", "(B)", "B. cat", "The answer is B").
- `vqa_normalize` / `vqa_accuracy`: the VQA challenge's answer processing (line breaks -> spaces;
  punctuation removed where it touches a space or in 1,000-style numbers, else turned into a space;
  periods dropped unless they precede a digit; number words -> digits; articles dropped; common
  contractions written with their apostrophe) and accuracy min(1, matching annotators / 3).
"""
from __future__ import annotations

import re
import string
from typing import Dict, Mapping, Optional, Sequence

ARTICLES = ("a", "an", "the")

# ----------------------------------------------------------------------------- the normalisation
_PUNCT_TO_SPACE = str.maketrans(string.punctuation, " " * len(string.punctuation))


def normalize_answer(text: str) -> str:
    """Lower-case, punctuation -> spaces, articles dropped, whitespace collapsed."""
    words = text.lower().translate(_PUNCT_TO_SPACE).split()
    return " ".join(w for w in words if w not in ARTICLES)


def first_line(text: str) -> str:
    """The text up to its first line break (generated answers often run on after it)."""
    return text.strip().split("\n")[0]


# ----------------------------------------------------------------------------- short and mc answers
_OPTION_LINE = re.compile(r"^\s*\(?[A-Z][.)]\s+\S", re.MULTILINE)
_LETTER_ONLY = re.compile(r"^\(?([A-Z])\)?\.?$")
_LETTER_PATTERNS = (
    re.compile(r"^\s*\(?([A-Z])\)?(?:[.:)]|$)"),                   # "B", "(B)", "B. cat", "B) cat"
    re.compile(r"\b(?:answer|option|choice) is:?\s*\(?([A-Z])\b"),  # "The answer is B"
    re.compile(r"\(([A-Z])\)"),                                     # "I pick (B) because ..."
)
ANSWER_KINDS = ("short", "mc")


def answer_type(question: str, answer: str) -> str:
    """'mc' (option letter answer to a question with lettered options), 'short' (<= 3 words, or the
    prompt asks for a single word or phrase) or 'open'."""
    if _LETTER_ONLY.match(answer.strip()) and _OPTION_LINE.search(question):
        return "mc"
    if "single word or phrase" in question.lower() or len(answer.split()) <= 3:
        return "short"
    return "open"


def option_letter(text: str) -> Optional[str]:
    """The option letter an answer picks, or None."""
    for pattern in _LETTER_PATTERNS:
        match = pattern.search(text.strip())
        if match:
            return match[1]
    return None


def choice_letter(prediction: str, options: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The letter an answer picks; failing that, the one option whose text the answer states."""
    letter = option_letter(prediction)
    if letter is not None or not options:
        return letter
    said = normalize_answer(prediction)
    named = [key for key, text in options.items() if normalize_answer(str(text)) and
             f" {normalize_answer(str(text))} " in f" {said} "]
    return named[0] if len(named) == 1 else None


def short_answer_match(prediction: str, truth: str) -> bool:
    """Exact match after normalisation, or the truth as a whole-word substring of the prediction."""
    pred, gold = normalize_answer(prediction), normalize_answer(truth)
    if not gold:
        return not pred
    return pred == gold or f" {gold} " in f" {pred} "


def exact_match(prediction: str, truth: str, kind: str) -> bool:
    """Match for 'mc' and 'short' answers (open answers are compared by similarity instead)."""
    if kind == "mc":
        return option_letter(prediction) == option_letter(truth)
    if kind == "short":
        return short_answer_match(prediction, truth)
    raise ValueError(f"exact_match: answer kind {kind!r} has no exact rule; expected one of {ANSWER_KINDS}")


# ----------------------------------------------------------------------------- VQA accuracy
_VQA_PUNCT = ";/[]\"{}()=+\\_-><@`,?!"
_THOUSANDS = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")
_NUMBERS: Dict[str, str] = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten".split())} | {"none": "0"}
_CONTRACTED = ("aren't can't couldn't didn't doesn't don't hadn't hasn't haven't he'd he'll he's i'd i'll "
               "i'm i've isn't it'd it'll it's let's ma'am mightn't might've mustn't must've needn't "
               "o'clock shan't she'd she'll she's should've shouldn't that's there's they'd they'll "
               "they're they've wasn't we'd we'll we're we've weren't what're what's what've where'd "
               "where's who'd who'll who's who've why's won't would've wouldn't y'all you'd you'll "
               "you're you've").split()
_CONTRACTIONS = {word.replace("'", ""): word for word in _CONTRACTED}


def vqa_normalize(answer: str) -> str:
    """The VQA challenge's processing of an answer string (see the module doc)."""
    original = answer.replace("\n", " ").replace("\t", " ").strip()
    strip_all, text = bool(_THOUSANDS.search(original)), original
    for p in _VQA_PUNCT:  # the test looks at the unmodified answer, as the official script does
        touches_space = f"{p} " in original or f" {p}" in original
        text = text.replace(p, "" if touches_space or strip_all else " ")
    text = _PERIOD.sub("", text)
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """min(1, number of annotator answers equal to the prediction / 3), both normalised."""
    pred = vqa_normalize(prediction)
    return min(1.0, sum(vqa_normalize(a) == pred for a in answers) / 3)
