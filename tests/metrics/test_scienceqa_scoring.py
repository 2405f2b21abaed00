"""ScienceQA answer extraction and accuracy by context type, against hand-worked values."""
import pytest

from mmrag.common.registry import SCORERS
from mmrag.metrics.scienceqa import context_types, extract_answer, scienceqa_accuracy


@pytest.mark.parametrize("text, n, expected", [
    ("LECTURE: l\nSOLUTION: s\n###\nANSWER: B.", 3, "B"),
    ("ANSWER: A.", 2, "A"),
    ("ANSWER: C", 4, "C"),                      # the pattern's final '.' matches the appended space
    ("B", 3, "B"),
    ("(B).", 3, "B"),
    ("ANSWER: A. ANSWER: B.", 3, None),         # two answers: failed
    ("the answer is B", 3, None),
    ("ANSWER: E.", 3, None),                    # beyond the options
    ("", 2, None),
])
def test_extract_answer(text, n, expected):
    assert extract_answer(text, n) == expected


def test_context_types_overlap():
    assert context_types({"has_image": True, "has_text": True}) == ("IMG", "TXT")
    assert context_types({"has_image": False, "has_text": False}) == ("NO",)


def test_scorer_by_context_hand_worked():
    items = [
        {"answer": "A", "choices": ["x", "y"], "has_image": True, "has_text": False},
        {"answer": "B", "choices": ["x", "y"], "has_image": True, "has_text": True},
        {"answer": "B", "choices": ["x", "y", "z"], "has_image": False, "has_text": True},
        {"answer": "C", "choices": ["x", "y", "z"], "has_image": False, "has_text": False},
    ]
    preds = ["ANSWER: A.", "ANSWER: A.", "ANSWER: B.", "nonsense"]
    scores, metrics = SCORERS.get("scienceqa")().score(preds, items)
    assert scores == [1.0, 0.0, 1.0, 0.0]
    assert metrics["accuracy"] == 0.5 and metrics["num"] == 4
    # IMG: items 0, 1 -> 1/2; TXT: items 1, 2 -> 1/2; NO: item 3 -> 0/1
    assert metrics["by_context"]["IMG"] == {"accuracy": 0.5, "num": 2}
    assert metrics["by_context"]["TXT"] == {"accuracy": 0.5, "num": 2}
    assert metrics["by_context"]["NO"] == {"accuracy": 0.0, "num": 1}
    assert scienceqa_accuracy([], [])["by_context"]["IMG"]["accuracy"] is None
