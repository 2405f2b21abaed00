"""Answer matching against hand-worked cases: the one normalisation, short / multiple-choice exact
match, option letters, the VQA challenge's processing and accuracy."""
from __future__ import annotations

import pytest

from mmrag.metrics.answers import (
    answer_type,
    choice_letter,
    exact_match,
    first_line,
    normalize_answer,
    option_letter,
    vqa_accuracy,
    vqa_normalize,
)


@pytest.mark.parametrize("text, normal", [("The Blue one.", "blue one"), ("  a  RED,car! ", "red car"),
                                          ("it's an apple", "it s apple"), ("", "")])
def test_normalize_answer(text, normal):
    assert normalize_answer(text) == normal


def test_first_line():
    assert first_line("  Blue.\nAnd also green") == "Blue."


@pytest.mark.parametrize("text, letter", [("B", "B"), ("(B)", "B"), ("B. dog", "B"), ("B) dog", "B"),
                                          ("The answer is C.", "C"), ("I pick (A) here", "A"),
                                          ("I think it is a dog", None), ("dog", None)])
def test_option_letter(text, letter):
    assert option_letter(text) == letter


@pytest.mark.parametrize("pred, truth, ok", [("Red", "red", True), ("It is red.", "Red", True), ("reddish", "red", False),
                                             ("The dog", "dog", True), ("two dogs", "2", False), ("", "red", False),
                                             ("a red car", "red car", True), ("car red", "red car", False)])
def test_short_answer_match(pred, truth, ok):
    assert exact_match(pred, truth, "short") is ok


def test_multiple_choice_match_and_option_text():
    assert exact_match("(B) a dog", "B", "mc") and not exact_match("A", "B", "mc")
    options = {"A": "tabby cat", "B": "dog"}
    assert choice_letter("a tabby cat", options) == "A"
    assert choice_letter("a cat or a dog", {"A": "cat", "B": "dog"}) is None  # names two options
    assert choice_letter("C", options) == "C"


def test_answer_types():
    assert answer_type("Which one?\nA. cat\nB. dog", "B") == "mc"
    assert answer_type("Which letter comes first?", "B") == "short"  # no lettered options
    assert answer_type("What is it? Answer the question using a single word or phrase.", "a large red fire truck") == "short"
    assert answer_type("Describe it.", "A large red fire truck parked outside.") == "open"


def test_open_answers_have_no_exact_rule():
    with pytest.raises(ValueError, match="no exact rule"):
        exact_match("x", "y", "open")


@pytest.mark.parametrize("answer, normal", [
    ("Two dogs.", "2 dogs"),             # number word -> digit, final period dropped
    ("1,000", "1000"),                   # a thousands comma disappears
    ("3.5", "3.5"),                      # a period before a digit stays
    ("yes, it is", "yes it is"),         # comma touching a space is removed
    ("black-and-white", "black and white"),  # a hyphen inside a word becomes a space
    ("dont know", "don't know"),         # contraction gets its apostrophe
    ("The  Cat\n", "cat"),               # article dropped, whitespace and case normalised
])
def test_vqa_normalize(answer, normal):
    assert vqa_normalize(answer) == normal


def test_vqa_accuracy_is_matches_over_three_capped_at_one():
    assert vqa_accuracy("Two", ["2", "2", "two", "3"]) == 1.0
    assert vqa_accuracy("2", ["2", "2", "3"]) == pytest.approx(2 / 3)
    assert vqa_accuracy("red", ["maroon", "dark red"]) == 0.0
