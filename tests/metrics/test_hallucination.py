"""Hallucination metrics on hand-worked fixtures: false-premise rejection, over-rejection, MME acc/acc+."""
import pytest

from mmrag.common.registry import SCORERS
from mmrag.metrics import hallucination  # noqa: F401  (registers lrv and mme)
from mmrag.metrics.hallucination import lrv_metrics, mme_answer, mme_metrics, rejects_premise

ITEMS = [
    {"question_id": 1, "polarity": "negative", "task": "negative_nonexistent_object", "keywords": []},
    {"question_id": 2, "polarity": "negative", "task": "negative_existent_attribute", "keywords": ["blue"]},
    {"question_id": 3, "polarity": "negative", "task": "negative_existent_attribute", "keywords": ["red"]},
    {"question_id": 4, "polarity": "positive", "task": "attribute", "keywords": ["blue"]},
    {"question_id": 5, "polarity": "positive", "task": "counting", "keywords": ["two"]},
    {"question_id": 6, "polarity": "positive", "task": "existence", "keywords": ["yes"]},
    {"question_id": 7, "polarity": "positive", "task": "knowledge", "keywords": ["river reeds"]},
]


@pytest.mark.parametrize("answer, expected", [
    ("No.", True), ("There is no rock in the image; it shows a tree.", True), ("That is wrong: it is blue.", True),
    ("I don't see a cat", True), ("Yes, there is a tree.", False), ("The tree is notable.", False),
    ("It is blue. It is not red.", False), ("", False), ("Knowledge of it is old", False), ("None.", True)])
def test_rejects_premise(answer, expected):
    assert rejects_premise(answer) is expected


def test_lrv_metrics_by_hand():
    predictions = ["There is no such thing.", "That is wrong: it is blue.", "Yes, it is green.",
                   "The creature is blue.", "Not two.", "Yes, there is one.", "It eats river reeds."]
    m = lrv_metrics(predictions, ITEMS)
    # negatives: 1 rejects, 2 rejects (+ names blue), 3 does not reject  -> 2/3 ; corrected: only item 2 of 2 with keywords
    assert m["false_premise_rejection"] == pytest.approx(2 / 3)
    assert m["negative_corrected"] == pytest.approx(1 / 2)
    # positives: 4 right, 5 rejects, 6 right ('yes'), 7 right -> accuracy 3/4, over-rejection 1/4
    assert m["positive_accuracy"] == pytest.approx(3 / 4)
    assert m["over_rejection"] == pytest.approx(1 / 4)
    assert m["robust_score"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert m["by_task"]["negative_existent_attribute"] == {"correct": 0.5, "rejected": 0.5, "num": 2}


def test_saying_no_to_everything_does_not_look_good():
    m = lrv_metrics(["No."] * len(ITEMS), ITEMS)
    assert m["false_premise_rejection"] == 1.0 and m["over_rejection"] == 1.0
    assert m["positive_accuracy"] == 0.0 and m["robust_score"] == 0.5
    yes = lrv_metrics(["Yes."] * len(ITEMS), ITEMS)
    assert yes["robust_score"] == 0.5 and yes["false_premise_rejection"] == 0.0


def test_mme_answer_rule():
    assert [mme_answer(a) for a in ("Yes", " no ", "Yes, there is.", "No, it is not", "Not sure", "The answer is yes", "")] \
        == ["yes", "no", "yes", "no", "no", "other", "other"]


def test_mme_scores_by_hand():
    items = [{"subtask": s, "pair": p, "answer": a} for s, p, a in [
        ("existence", "i1", "yes"), ("existence", "i1", "no"),
        ("existence", "i2", "yes"), ("existence", "i2", "no"),
        ("count", "i1", "yes"), ("count", "i1", "no")]]
    predictions = ["Yes", "No", "Yes", "Yes", "maybe", "No"]
    correct, m = mme_metrics(predictions, items)
    assert correct == [1, 1, 1, 0, 0, 1]
    # existence: acc 3/4, acc+ 1/2 -> 125 ; count: acc 1/2, acc+ 0 -> 50 ; total 175
    assert m["subtasks"]["existence"]["score"] == pytest.approx(125.0)
    assert m["subtasks"]["count"]["score"] == pytest.approx(50.0)
    assert m["total"] == pytest.approx(175.0) and m["perception"] == pytest.approx(175.0) and m["cognition"] == 0
    assert m["other"] == 1


def test_registered_scorers_return_per_item_correctness():
    scores, metrics = SCORERS.get("lrv")().score(["No.", "Yes"], [ITEMS[0], ITEMS[5]])
    assert scores == [1.0, 1.0] and metrics["num"] == 2
    scores, metrics = SCORERS.get("mme")().score(["yes", "yes"], [{"subtask": "color", "pair": "a", "answer": "yes"},
                                                                  {"subtask": "color", "pair": "a", "answer": "no"}])
    assert scores == [1.0, 0.0] and metrics["subtasks"]["color"]["score"] == pytest.approx(50.0)
