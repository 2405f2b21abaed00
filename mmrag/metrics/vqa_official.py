"""The DataEngine paper's benchmark metrics with the semantics of the official evaluators, and their
scorers (registered in SCORERS; interface in `mmrag.metrics.scorers`).

VQA accuracy (OKVQA): an answer is compared with each of the annotators' answers (10 in OKVQA /
VQAv2) left out in turn; each left-out subset gives min(1, matches among the other answers / 3) and
the question's accuracy is their mean (so 3 matching annotators of 10 give 0.9, 4 or more give 1).
Two official variants differ in when answers are normalised (`mmrag.metrics.answers`):
- `minigpt4` (the evaluator MiniGPT-v2 / DataEngine report with): newlines and tabs -> spaces, ends
  stripped; only when the annotators disagree are all answers and the prediction normalised
  (punctuation, then number words, articles, contractions); the comparison ignores case.
- `vqa_challenge` (the VQA challenge's script): the prediction is always normalised; the annotators'
  answers get the punctuation step only, and only when they disagree; the comparison is exact (the
  released annotations are already normalised, lower-case).
Summaries round 100 x mean to 2 decimals, overall, per question type and per answer type.

VizWiz (as DataEngine evaluates it): min(1, annotators whose answer equals the prediction ignoring
case / 3), no leave-one-out, no normalisation.

VSR: the prediction must equal the label word ('true' / 'false') ignoring case; nothing is extracted.

Multiple choice:
- SEED-Bench (DataEngine's converter): the first character of the stripped prediction, lower-cased,
  must equal the answer letter lower-cased ("B. dog" and "b" are right; "(B)" and "The answer is B"
  are wrong; an empty answer is wrong).
- MMBench (the exact-matching stage of its evaluator): after replacing .()[],:;!*#{} with spaces, the
  answer's whitespace-separated words are searched for the option letters that exist; exactly one
  letter found -> that option. Otherwise, the one option whose text (lower-cased) occurs in the
  lower-cased answer. Otherwise no choice (the official evaluator would then ask a judge LLM; here the
  answer counts as wrong and `unresolved` counts it).
- MMBench circular evaluation: a question with n options is asked n times, its options rotated; its
  copies share `index % 1_000_000` (the copies' indices are index + r * 1_000_000); the question counts
  only if every copy is answered right.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from mmrag.common.registry import SCORERS
from mmrag.metrics.answers import vqa_digits_articles, vqa_punctuation
from mmrag.metrics.scorers import accuracy_metrics

VQA_VARIANTS = ("minigpt4", "vqa_challenge")
CIRCULAR_STRIDE = 1_000_000
LETTERS = "ABCDEFGHIJ"
_MMBENCH_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})

Item = Dict[str, Any]
Scored = Tuple[List[float], Dict[str, Any]]


def clean_generation(text: str) -> str:
    """What the DataEngine scripts keep of a generated answer: '<unk>' removed, ends stripped."""
    return str(text).replace("<unk>", "").strip()


# ----------------------------------------------------------------------------- VQA accuracy
def _full(text: str) -> str:
    return vqa_digits_articles(vqa_punctuation(text))


def _flat(text: str) -> str:
    return str(text).replace("\n", " ").replace("\t", " ").strip()


def vqa_official_accuracy(prediction: str, answers: Sequence[str], variant: str = "minigpt4") -> float:
    """One question's accuracy in [0, 1] (see the module doc for the two variants)."""
    if variant not in VQA_VARIANTS:
        raise ValueError(f"vqa_official_accuracy: variant {variant!r}; expected one of {VQA_VARIANTS}")
    if not answers:
        raise ValueError("vqa_official_accuracy: a question needs at least one annotator answer")
    pred, truths = _flat(prediction), [_flat(a) for a in answers]
    disagree = len(set(truths)) > 1
    if variant == "minigpt4":
        if disagree:
            pred, truths = _full(pred), [_full(t) for t in truths]
        pred, truths = pred.lower(), [t.lower() for t in truths]
    else:
        pred = _full(pred)
        if disagree:
            truths = [vqa_punctuation(t) for t in truths]
    hits = [t == pred for t in truths]
    total = sum(hits)
    return sum(min(1.0, (total - hit) / 3) for hit in hits) / len(hits)


def percent(values: Sequence[float], digits: int = 2) -> float:
    """round(100 x mean, digits), as the VQA evaluator reports."""
    return round(100 * sum(values) / len(values), digits) if values else 0.0


def grouped_percent(scores: Sequence[float], keys: Sequence[Any]) -> Dict[str, float]:
    """percent() of the scores of each key (keys in sorted order)."""
    groups: Dict[str, List[float]] = defaultdict(list)
    for score, key in zip(scores, keys):
        groups[str(key)].append(score)
    return {key: percent(groups[key]) for key in sorted(groups)}


# ----------------------------------------------------------------------------- VizWiz, VSR
def vizwiz_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """min(1, annotators whose answer equals the prediction ignoring case / 3)."""
    pred = clean_generation(prediction).lower()
    return min(sum(str(a).lower() == pred for a in answers) / 3.0, 1.0)


def vsr_label(label: Any) -> str:
    """'true' / 'false' from a VSR label (1 / 0, a bool, or the word)."""
    if isinstance(label, bool) or label in (0, 1):
        return "true" if int(label) == 1 else "false"
    word = str(label).strip().lower()
    if word not in ("true", "false"):
        raise ValueError(f"VSR label {label!r}: expected 1 / 0 or true / false")
    return word


def vsr_correct(prediction: str, label: Any) -> bool:
    """The prediction equals the label word, ignoring case."""
    return clean_generation(prediction).lower() == vsr_label(label)


# ----------------------------------------------------------------------------- multiple choice
def seed_choice(prediction: str) -> Optional[str]:
    """The option SEED-Bench's DataEngine converter reads: the first character, upper-cased (None if empty)."""
    text = clean_generation(prediction)
    return text[0].upper() if text else None


def seed_correct(prediction: str, answer: str) -> bool:
    choice = seed_choice(prediction)
    return choice is not None and choice.lower() == str(answer).strip().lower()


def mmbench_letter(prediction: str, letters: Iterable[str]) -> Optional[str]:
    """The one existing option letter that stands as a word of the answer (None: none or several)."""
    words = set(str(prediction).translate(_MMBENCH_SEPARATORS).split())
    found = [letter for letter in letters if letter in words]
    return found[0] if len(found) == 1 else None


def mmbench_text(prediction: str, options: Mapping[str, Any]) -> Optional[str]:
    """The one option whose text, lower-cased, occurs in the lower-cased answer (None: none or several)."""
    said = str(prediction).lower()
    found = [letter for letter, text in options.items() if str(text).lower() in said]
    return found[0] if len(found) == 1 else None


def mmbench_choice(prediction: str, options: Mapping[str, Any]) -> Optional[str]:
    """MMBench's exact-matching extraction: an option letter, else an option's text, else None."""
    return mmbench_letter(prediction, list(options)) or mmbench_text(prediction, options)


def present_options(row: Mapping[str, Any], letters: str = LETTERS) -> Dict[str, str]:
    """{letter: text} of the options a row has (a missing, empty, NaN or 'none' cell is no option)."""
    out = {}
    for letter in letters:
        value = row.get(letter)
        if value is None or (isinstance(value, float) and value != value):
            continue
        if str(value).strip().lower() in ("", "nan", "none"):
            continue
        out[letter] = str(value)
    return out


def rotate_options(options: Mapping[str, str], answer: str, shift: int) -> Tuple[Dict[str, str], str]:
    """Options rotated by `shift`: the option at letter i moves to letter (i - shift) mod n (shift 1
    puts B's text under A); returns the new options and the new answer letter."""
    letters = list(options)
    n = len(letters)
    texts = [options[k] for k in letters]
    rotated = {letters[i]: texts[(i + shift) % n] for i in range(n)}
    return rotated, letters[(letters.index(answer) - shift) % n]


def circular_group(index: Any) -> int:
    """The question an MMBench row belongs to: its index modulo 1,000,000."""
    return int(index) % CIRCULAR_STRIDE


def circular_results(correct: Sequence[bool], groups: Sequence[Any]) -> Dict[Any, bool]:
    """group -> True when every row of the group is right."""
    out: Dict[Any, bool] = {}
    for ok, group in zip(correct, groups):
        out[group] = out.get(group, True) and bool(ok)
    return out


# ----------------------------------------------------------------------------- scorers
def _type_of(item: Item) -> str:
    """An item's question type: SEED-Bench's question_type, else a DataEngine item's qtype."""
    return str(item.get("question_type", item.get("qtype", "")))


def _predictions(predictions: Sequence[str]) -> List[str]:
    return [clean_generation(p) for p in predictions]


@SCORERS.register("vqa_official")
class VqaOfficialScorer:
    """item "answers" (the annotators' answers); optional "question_type", "answer_type" (summaries).
    Metrics: accuracy (mean in [0, 1]), overall (the evaluator's rounded percent), per_question_type,
    per_answer_type, by_family."""
    chart = ("accuracy",)
    variant = "minigpt4"

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        scores = [vqa_official_accuracy(p, it["answers"], self.variant) for p, it in zip(_predictions(predictions), items)]
        metrics = accuracy_metrics(scores, items)
        metrics.update(variant=self.variant, overall=percent(scores),
                       per_question_type=grouped_percent(scores, [it.get("question_type", "") for it in items]),
                       per_answer_type=grouped_percent(scores, [it.get("answer_type", "") for it in items]))
        return scores, metrics


@SCORERS.register("vqa_challenge")
class VqaChallengeScorer(VqaOfficialScorer):
    """As vqa_official, with the VQA challenge script's normalisation rule."""
    variant = "vqa_challenge"


@SCORERS.register("vizwiz")
class VizWizScorer:
    """item "answers"; min(1, equal answers / 3)."""
    chart = ("accuracy",)

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        scores = [vizwiz_accuracy(p, it["answers"]) for p, it in zip(predictions, items)]
        return scores, accuracy_metrics(scores, items)


@SCORERS.register("vsr")
class VsrScorer:
    """item "answer": 'true' / 'false' (or 1 / 0)."""
    chart = ("accuracy",)

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        scores = [float(vsr_correct(p, it["answer"])) for p, it in zip(predictions, items)]
        metrics = accuracy_metrics(scores, items)
        metrics["not_true_false"] = sum(clean_generation(p).lower() not in ("true", "false") for p in predictions)
        return scores, metrics


@SCORERS.register("mc_seed")
class SeedScorer:
    """item "answer" (a letter); optional "question_type" (or "qtype") -> per_question_type (percent)."""
    chart = ("accuracy",)

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        scores = [float(seed_correct(p, it["answer"])) for p, it in zip(predictions, items)]
        metrics = accuracy_metrics(scores, items)
        metrics["per_question_type"] = grouped_percent(scores, [_type_of(it) for it in items])
        return scores, metrics


def _mmbench_rows(predictions: Sequence[str], items: Sequence[Item]) -> Tuple[List[float], int]:
    scores, unresolved = [], 0
    for p, it in zip(_predictions(predictions), items):
        choice = mmbench_choice(p, it["options"])
        unresolved += choice is None
        scores.append(float(choice == str(it["answer"]).strip()))
    return scores, unresolved


@SCORERS.register("mc_mmbench")
class MMBenchScorer:
    """item "answer" (a letter) and "options" ({letter: text}); each row on its own (no circular rule)."""
    chart = ("accuracy",)

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        scores, unresolved = _mmbench_rows(predictions, items)
        metrics = accuracy_metrics(scores, items)
        metrics["unresolved"] = unresolved
        return scores, metrics


@SCORERS.register("mmbench_circular")
class MMBenchCircularScorer:
    """item "answer", "options", and "index" (copies share index % 1e6) or "circular_group"; optional
    "category" (or "qtype"). Per-item score: whether the row's question counts (all its copies right); metrics:
    accuracy = questions counted / questions, vanilla_accuracy = rows right / rows, per_category."""
    chart = ("accuracy", "vanilla_accuracy")

    def score(self, predictions: Sequence[str], items: Sequence[Item]) -> Scored:
        rows, unresolved = _mmbench_rows(predictions, items)
        groups = [it["circular_group"] if "circular_group" in it else circular_group(it["index"]) for it in items]
        passed = circular_results([r == 1.0 for r in rows], groups)
        scores = [float(passed[g]) for g in groups]
        category = {g: it.get("category", it.get("qtype", "")) for g, it in zip(groups, items)}
        keys = list(passed)
        metrics = {"accuracy": sum(passed.values()) / len(passed) if passed else 0.0, "num": len(passed),
                   "num_rows": len(rows), "vanilla_accuracy": sum(rows) / len(rows) if rows else 0.0,
                   "unresolved": unresolved,
                   "per_category": grouped_percent([float(passed[k]) for k in keys], [category[k] for k in keys])}
        return scores, metrics
