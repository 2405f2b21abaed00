"""The POPE rule and metrics against hand-worked answers."""
from __future__ import annotations

import pytest

from mmrag.metrics.pope import answer_to_label, pope_metrics


@pytest.mark.parametrize(
    "answer, label",
    [
        ("No, there is not.", "no"),          # "No" is a word of the first sentence
        ("I don't know", "yes"),              # no whole word no/not: SURf's substring test said "no"
        ("Yes.", "yes"),
        ("", "yes"),                          # empty: the official rule finds no "no" word
        ("There is no dog in the image.", "no"),
        ("The dog is not visible", "no"),
        ("Yes, there is a dog. It is not small.", "yes"),  # only the first sentence counts
        ("Nothing like that. No.", "yes"),    # "Nothing" is not "No"; the "No" is in sentence two
        ("no", "no"),
        ("NO", "yes"),                        # the official word list is case-sensitive
        ("No,there is a cat", "yes"),         # commas are deleted, not split on: first word "Nothere"
        ("Is there a dog? No.", "no"),        # only '.' ends the first sentence
    ],
)
def test_answer_to_label(answer, label):
    assert answer_to_label(answer) == label


def test_metrics_hand_worked():
    labels = ["yes", "yes", "no", "no", "yes", "no"]
    answers = ["Yes.", "No, there is not.", "I don't know", "There is no cat.", "", "not sure."]
    # predictions: yes, no, yes, no, yes, no -> TP 2 (0, 4), FN 1 (1), FP 1 (2), TN 2 (3, 5)
    m = pope_metrics(answers, labels)
    assert (m["tp"], m["fn"], m["fp"], m["tn"]) == (2, 1, 1, 2)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["yes_ratio"] == pytest.approx(0.5) and m["num_empty"] == 1


def test_all_no_answers_give_zero_precision_not_a_crash():
    m = pope_metrics(["No."] * 4, ["yes", "no", "yes", "no"])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["accuracy"] == 0.5


def test_bad_labels_and_lengths_are_errors():
    with pytest.raises(ValueError, match="'maybe'"):
        pope_metrics(["Yes"], ["maybe"])
    with pytest.raises(ValueError, match="2 answers for 1 labels"):
        pope_metrics(["Yes", "No"], ["yes"])
