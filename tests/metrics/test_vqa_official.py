"""The DataEngine benchmarks' official metrics against hand-worked cases: the VQA normalisation
(punctuation, digits, articles, contractions), 10-answer leave-one-out accuracy in both official
variants, VizWiz, VSR, SEED's first-letter rule, MMBench's letter / option-text extraction and its
circular evaluation. Every expected value is worked out by hand in the comments."""
from __future__ import annotations

import pytest

import mmrag  # noqa: F401  (registers the scorers)
from mmrag.common.registry import SCORERS
from mmrag.metrics.answers import VQA_CONTRACTIONS, vqa_normalize
from mmrag.metrics.vqa_official import (
    circular_group,
    mmbench_choice,
    present_options,
    rotate_options,
    seed_choice,
    seed_correct,
    vizwiz_accuracy,
    vqa_official_accuracy,
    vsr_correct,
)


@pytest.mark.parametrize("answer, normal", [
    ("Hes got 10,000 dollars!", "he's got 10000 dollars"),  # digit,digit comma: every listed mark deleted; 'hes' -> he's
    ("yes, i think so", "yes i think so"),                  # the comma touches a space: deleted
    ("black/white", "black white"),                         # '/' touches no space: becomes a space
    ("(a) cat", "cat"),                                     # '(' -> space, ')' touches a space -> deleted; 'a' dropped
    ("It's 3.14.", "it's 3.14"),                            # a period before a digit stays, the last one goes
    ("a.m.", "am"),                                         # periods not before a digit are deleted
    ("ten", "10"), ("none", "0"), ("eleven", "eleven"),     # only zero..ten and none become digits
    ("An Apple", "apple"),                                  # articles dropped after lower-casing
    ("wouldnt've", "wouldn't've"), ("y'all'dve", "y'all'd've"), ("oclock", "o'clock"),
    ("Im", "im"),                                           # the table's key is 'Im': never matches lower case
    ("somebody'd", "somebodyd"),                            # the table's odd entry, kept
    ("what? no", "what no"),                                # '?' followed by a space: deleted
])
def test_vqa_normalisation(answer, normal):
    assert vqa_normalize(answer) == normal


def test_contractions_table_is_the_full_one():
    assert len(VQA_CONTRACTIONS) == 120  # the evaluator's table has 120 keys
    assert VQA_CONTRACTIONS["couldn'tve"] == VQA_CONTRACTIONS["couldnt've"] == "couldn't've"
    assert VQA_CONTRACTIONS["'ows'at"] == "'ow's'at" and VQA_CONTRACTIONS["twas"] == "'twas"


# Leave-one-out over 10 answers with m matching: a left-out match leaves m-1, a left-out other leaves m.
# m=1: (1*0 + 9*(1/3))/10 = 0.3; m=2: (2*(1/3) + 8*(2/3))/10 = 0.6; m=3: (3*(2/3) + 7*1)/10 = 0.9; m>=4: 1.
@pytest.mark.parametrize("matches, acc", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_leave_one_out_accuracy(matches, acc):
    answers = ["2"] * matches + ["3"] * (10 - matches)
    assert vqa_official_accuracy("2", answers, "minigpt4") == pytest.approx(acc)
    assert vqa_official_accuracy("2", answers, "vqa_challenge") == pytest.approx(acc)


@pytest.mark.parametrize("pred, answers, minigpt4, challenge", [
    # all annotators agree: minigpt4 normalises nothing, compares ignoring case; challenge normalises the prediction only
    ("two", ["2"] * 10, 0.0, 1.0),
    ("yes", ["Yes"] * 10, 1.0, 0.0),
    # they disagree: minigpt4 normalises both sides fully; challenge gives the annotators punctuation only
    ("don't know", ["dont know"] * 3 + ["no"] * 7, 0.9, 0.0),
    ("dog", ["the dog"] * 8 + ["dog"] * 2, 1.0, 0.6),
    ("T-shirt.", ["t-shirt"] * 4 + ["shirt"] * 6, 1.0, 1.0),   # both sides -> 't shirt', 4 matches
    ("1,000", ["1000"] * 5 + ["1,000"] * 5, 1.0, 1.0),          # the thousands comma disappears everywhere
    ("red, white", ["red white"] * 2 + ["red"] * 8, 0.6, 0.6),  # comma touching a space deleted; 2 matches
    ("Two\n", ["2"] * 3 + ["two dogs"] * 7, 0.9, 0.9),          # newline stripped, 'two' -> '2'
])
def test_official_variants(pred, answers, minigpt4, challenge):
    assert vqa_official_accuracy(pred, answers, "minigpt4") == pytest.approx(minigpt4)
    assert vqa_official_accuracy(pred, answers, "vqa_challenge") == pytest.approx(challenge)


def test_vqa_rejects_bad_input():
    with pytest.raises(ValueError, match="variant"):
        vqa_official_accuracy("x", ["x"], "lenient")
    with pytest.raises(ValueError, match="at least one"):
        vqa_official_accuracy("x", [])


def test_vizwiz():
    answers = ["Unanswerable"] * 3 + ["soup"] * 2 + ["tomato soup"] * 5
    assert vizwiz_accuracy("unanswerable", answers) == 1.0  # 3 equal ignoring case -> 3/3
    assert vizwiz_accuracy("Soup", answers) == pytest.approx(2 / 3)
    assert vizwiz_accuracy("soup.", answers) == 0.0          # no normalisation at all
    assert vizwiz_accuracy(" tomato soup<unk>", answers) == 1.0


@pytest.mark.parametrize("pred, label, ok", [("True", 1, True), ("false", 0, True), ("FALSE", "false", True),
                                             ("true.", 1, False), ("yes", 1, False), ("false", 1, False)])
def test_vsr(pred, label, ok):
    assert vsr_correct(pred, label) is ok


@pytest.mark.parametrize("pred, choice", [("B", "B"), ("b. dog", "B"), (" C ", "C"), ("(B)", "("),
                                          ("The answer is B", "T"), ("Bird", "B"), ("", None)])
def test_seed_reads_the_first_character(pred, choice):
    assert seed_choice(pred) == choice


def test_seed_correct():
    assert seed_correct("b) a dog", "B") and not seed_correct("(B)", "B") and not seed_correct("", "A")


OPTIONS = {"A": "cat", "B": "dog", "C": "bird", "D": "fish"}


@pytest.mark.parametrize("pred, choice", [
    ("B", "B"), ("(B)", "B"), ("B.", "B"), ("B. dog", "B"), ("The answer is B", "B"), ("Answer: B", "B"),
    ("[C]", "C"), ("**D**", "D"), ("C: bird", "C"),
    ("dog", "B"),                      # no letter: the one option text it contains
    ("I think it is a dog.", "B"),     # 'I' is no option letter, lower-case 'a' is not a letter either
    ("A dog", "A"),                    # the capital article reads as option A, as in the official rule
    ("B or C", None),                  # two letters, and no option text
    ("a cat or a dog", None),          # no letter, two option texts
    ("b", None),                       # lower-case letters are not read as letters
    ("E", None),                       # not an existing option
])
def test_mmbench_choice(pred, choice):
    assert mmbench_choice(pred, OPTIONS) == choice


def test_mmbench_ignores_absent_options():
    options = present_options({"A": "cat", "B": "dog", "C": float("nan"), "D": "nan"})
    assert options == {"A": "cat", "B": "dog"}
    assert mmbench_choice("C", options) is None and mmbench_choice("The answer is B", options) == "B"


def test_rotations():
    assert rotate_options(OPTIONS, "B", 1) == ({"A": "dog", "B": "bird", "C": "fish", "D": "cat"}, "A")
    assert rotate_options(OPTIONS, "B", 2) == ({"A": "bird", "B": "fish", "C": "cat", "D": "dog"}, "D")
    assert circular_group(3000007) == 7 and circular_group(7) == 7


def _mc_item(index, answer, options=OPTIONS, **extra):
    return {"question": "Which animal is it?", "index": index, "answer": answer, "options": options, **extra}


def test_mmbench_circular_scorer():
    # question 7 asked 4 times, all right; question 8 asked twice, the second copy wrong
    items = [_mc_item(7, "B"), _mc_item(1000007, "A"), _mc_item(2000007, "D"), _mc_item(3000007, "C"),
             _mc_item(8, "A", {"A": "red", "B": "blue"}), _mc_item(1000008, "B", {"A": "blue", "B": "red"})]
    preds = ["B", "(A)", "The answer is D", "bird", "A", "A"]
    scores, metrics = SCORERS.get("mmbench_circular")().score(preds, items)
    assert metrics["accuracy"] == 0.5 and metrics["num"] == 2          # 1 of 2 questions counts
    assert metrics["vanilla_accuracy"] == pytest.approx(5 / 6)         # 5 of 6 rows right
    assert scores == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_vqa_scorer_summaries():
    items = [{"question": "What is it?", "answers": ["2"] * 3 + ["3"] * 7, "question_type": "what", "answer_type": "number"},
             {"question": "Is it red?", "answers": ["yes"] * 10, "question_type": "is", "answer_type": "yes/no"}]
    scores, metrics = SCORERS.get("vqa_official")().score(["two", "Yes"], items)
    assert scores == pytest.approx([0.9, 1.0])
    assert metrics["overall"] == 95.0 and metrics["per_answer_type"] == {"number": 90.0, "yes/no": 100.0}
    scores, _ = SCORERS.get("vqa_challenge")().score(["two", "Yes"], items)
    assert scores == pytest.approx([0.9, 1.0])  # 'Yes' -> 'yes' on the prediction side


def test_other_scorers_registered_and_counting():
    seed = [{"question": "q", "answer": "B", "question_type": 1}, {"question": "q", "answer": "C", "qtype": 2}]
    _, m = SCORERS.get("mc_seed")().score(["B. dog", "(C)"], seed)
    assert m["accuracy"] == 0.5 and m["per_question_type"] == {"1": 100.0, "2": 0.0}
    _, m = SCORERS.get("vsr")().score(["true", "maybe"], [{"question": "q", "answer": 1}, {"question": "q", "answer": 0}])
    assert m["accuracy"] == 0.5 and m["not_true_false"] == 1
    _, m = SCORERS.get("mc_mmbench")().score(["B or C"], [_mc_item(1, "B")])
    assert m["accuracy"] == 0.0 and m["unresolved"] == 1
    _, m = SCORERS.get("vizwiz")().score(["soup"], [{"question": "q", "answers": ["soup"] * 2 + ["x"] * 8}])
    assert m["accuracy"] == pytest.approx(2 / 3)


# ----------------------------------------------------------------------------- against a reference
# A second, literal implementation of the two official evaluators, written the way their scripts
# are (answers as {answer_id, answer} dicts, the left-out one removed by identity, text rewritten in
# place), over random answers drawn from a vocabulary rich in punctuation, number words, articles and
# contractions. Its contraction table covers exactly the vocabulary's words (checked by hand against
# the official table: 'Im' is keyed with a capital, so 'im' stays).
_REF_CONTRACTIONS = {"dont": "don't", "cant": "can't", "youre": "you're", "hes": "he's", "somebody'd": "somebodyd",
                     "wouldnt've": "wouldn't've", "oclock": "o'clock"}
_REF_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "ten": "10"}
_REF_PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
_WORDS = ["dont", "don't", "cant", "im", "Im", "youre", "hes", "somebody'd", "wouldnt've", "oclock", "two", "Two",
          "2", "ten", "none", "0", "a", "an", "the", "The", "dog", "Dog", "red", "t-shirt", "t shirt", "1,000", "1000",
          "3.5", "yes", "yes.", "no!", "(left)", "left", "black/white", "black white", "eleven", "a.m.", "am"]


def _ref_punctuation(text):
    import re

    out = text
    for p in _REF_PUNCT:
        if (p + " " in text or " " + p in text) or re.search(r"(\d)(,)(\d)", text) is not None:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return re.sub(r"\.(?!\d)", "", out, count=32)


def _ref_words(text):
    words = [_REF_NUMBERS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ("a", "an", "the")]
    return " ".join(_REF_CONTRACTIONS.get(w, w) for w in words)


def _ref_accuracy(pred, answers, variant):
    gts = [{"answer_id": i, "answer": a.replace("\n", " ").replace("\t", " ").strip()} for i, a in enumerate(answers)]
    res = pred.replace("\n", " ").replace("\t", " ").strip()
    disagree = len({g["answer"] for g in gts}) > 1
    if variant == "vqa_challenge":
        res = _ref_words(_ref_punctuation(res))
        if disagree:
            for g in gts:
                g["answer"] = _ref_punctuation(g["answer"])
        same = lambda a, b: a == b  # noqa: E731
    else:
        if disagree:
            for g in gts:
                g["answer"] = _ref_words(_ref_punctuation(g["answer"]))
            res = _ref_words(_ref_punctuation(res))
        same = lambda a, b: a.lower() == b.lower()  # noqa: E731
    accs = []
    for left_out in gts:
        others = [g for g in gts if g is not left_out]
        accs.append(min(1, len([g for g in others if same(g["answer"], res)]) / 3))
    return sum(accs) / len(accs)


@pytest.mark.parametrize("variant", ["minigpt4", "vqa_challenge"])
def test_equals_a_literal_reference_on_random_answers(variant):
    import random

    rng = random.Random(14)
    phrase = lambda: " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))  # noqa: E731
    for _ in range(1500):
        pool = [phrase() for _ in range(rng.randint(1, 3))]
        answers = [rng.choice(pool) for _ in range(10)]
        pred = rng.choice(pool + [phrase()]) + rng.choice(["", ".", "\n", " !"])
        assert vqa_official_accuracy(pred, answers, variant) == pytest.approx(_ref_accuracy(pred, answers, variant)), (pred, answers)
