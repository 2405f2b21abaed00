"""Matching generated answers against ground truth: the one answer normalisation and the rules
built on it.

- `normalize_answer`: lower-case, punctuation -> spaces, articles a/an/the dropped, whitespace
  collapsed ('The Blue one.' -> 'blue one'). Used by exact match, token F1 and instruction tuning.
- `exact_match(prediction, truth, kind)`: for 'short' answers the normalised prediction equals the
  truth or contains it as whole words; for 'mc' the option letters agree.
- `option_letter`: the option letter an answer picks ("B", "(B)", "B. cat", "The answer is B").
- `vqa_normalize` / `vqa_accuracy`: the VQA challenge's answer processing (line breaks -> spaces;
  punctuation removed where it touches a space or in 1,000-style numbers, else turned into a space;
  periods dropped unless they precede a digit; number words -> digits; articles dropped; the
  evaluator's full contractions table, `VQA_CONTRACTIONS`) and accuracy min(1, matching annotators / 3).
  The leave-one-out form of the official evaluators is in `mmrag.metrics.vqa_official`.
"""
from __future__ import annotations

import re
import string
from typing import Dict, List, Mapping, Optional, Sequence

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
# The VQA evaluator's contractions table, complete. Each form below is looked up under its spellings
# with one apostrophe left out ("couldn't've" <- "couldnt've", "couldn'tve"; "don't" <- "dont").
# The table's own oddities are kept: capitalised keys ("Im", "Ive", "Id've") never match the
# lower-cased text, "let's" and "she's" map to themselves, and "somebody'd" loses its apostrophe.
_CONTRACTED_FORMS = (
    "ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't "
    "he'd he'd've he's how'd how'll how's I'd've I'm I've isn't it'd it'd've it'll ma'am mightn't mightn't've "
    "might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't "
    "shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've someone'll someone's "
    "something'd something'd've something'll that's there'd there'd've there're there's they'd they'd've "
    "they'll they're they've 'twas wasn't we'd've we've weren't what'll what're what's what've when's "
    "where'd where's where've who'd who'd've who'll who's who've why'll why're why's won't would've "
    "wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've").split()


def _spellings_without_one_apostrophe(form: str) -> List[str]:
    cuts = [i for i, ch in enumerate(form) if ch == "'"]
    return [form[:i] + form[i + 1:] for i in cuts]


VQA_CONTRACTIONS: Dict[str, str] = {
    **{key: form for form in _CONTRACTED_FORMS for key in _spellings_without_one_apostrophe(form)},
    "let's": "let's", "she's": "she's", "somebody'd": "somebodyd",
}
# periods removed per answer: the official script passes re.UNICODE (32) where `count` goes
_PERIODS_REMOVED = 32


def vqa_punctuation(text: str) -> str:
    """The VQA evaluator's punctuation step: each of ;/[]"{}()=+\\_-><@`,?! is deleted when it touches
    a space anywhere in the answer or when the answer holds a digit,digit comma, else it becomes a
    space; then periods not followed by a digit are deleted (at most 32 of them)."""
    strip_all, out = bool(_THOUSANDS.search(text)), text
    for p in _VQA_PUNCT:  # the test looks at the unmodified text, as the official script does
        touches_space = f"{p} " in text or f" {p}" in text
        out = out.replace(p, "" if touches_space or strip_all else " ")
    return _PERIOD.sub("", out, count=_PERIODS_REMOVED)


def vqa_digits_articles(text: str) -> str:
    """The VQA evaluator's word step: lower-case, number words zero..ten (and 'none') -> digits,
    articles dropped, then each word looked up in the contractions table."""
    words = [_NUMBERS.get(w, w) for w in text.lower().split()]
    return " ".join(VQA_CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def vqa_normalize(answer: str) -> str:
    """The VQA challenge's processing of an answer string (see the module doc)."""
    original = answer.replace("\n", " ").replace("\t", " ").strip()
    return vqa_digits_articles(vqa_punctuation(original))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """min(1, number of annotator answers equal to the prediction / 3), both normalised."""
    pred = vqa_normalize(prediction)
    return min(1.0, sum(vqa_normalize(a) == pred for a in answers) / 3)
