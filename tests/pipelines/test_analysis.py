"""The name-only rule on a hand-made training file; expected answers and scores worked out by hand."""
from __future__ import annotations

import pytest

from mmrag.pipelines.analysis import NameOnlyRule, agreement, name_only_scores, object_name


def record(name, answer, article="a"):
    return {"conversations": [{"from": "human", "value": f"<image>\nIs there {article} {name} in the image? Answer yes or no."},
                              {"from": "gpt", "value": answer}]}


# cat: 2 yes / 1 no -> yes; dog: 1 yes / 2 no -> no; owl: 1 / 1 -> yes (tie); apple: 0 / 1 -> no.
# overall: 4 yes, 5 no -> an unseen name gets "no".
TRAIN = [record("cat", "Yes."), record("cat", "Yes."), record("cat", "No."), record("dog", "No."), record("dog", "Yes."),
         record("dog", "No."), record("owl", "Yes."), record("owl", "No."), record("apple", "No.", "an"),
         {"conversations": [{"from": "human", "value": "What colour is it?"}, {"from": "gpt", "value": "red"}]}]


def test_rule_answers_from_training_shares():
    rule = NameOnlyRule.fit(TRAIN)
    assert [rule.answer(f"Is there a {n} in the image?") for n in ("cat", "dog", "owl", "zebra")] == ["yes", "no", "yes", "no"]
    assert rule.answer("Is there an apple in the image?") == "no"
    assert object_name("<image>\nIs there a red ball in the image? Answer yes or no.") == "red ball"


def test_unseen_names_take_the_overall_majority():
    rule = NameOnlyRule.fit([record("cat", "Yes."), record("cat", "Yes."), record("dog", "No.")])
    assert rule.answer("Is there a zebra in the image?") == "yes"


def test_scores_with_the_pope_metric():
    rule = NameOnlyRule.fit(TRAIN)
    questions = [{"text": "Is there a cat in the image?", "label": "yes"},    # rule yes: TP
                 {"text": "Is there a dog in the image?", "label": "yes"},    # rule no: FN
                 {"text": "Is there a owl in the image?", "label": "no"},     # rule yes: FP
                 {"text": "Is there a zebra in the image?", "label": "no"}]   # rule no: TN
    m = name_only_scores(rule, questions)
    assert m["accuracy"] == pytest.approx(0.5) and m["yes_ratio"] == pytest.approx(0.5)
    assert m["f1"] == pytest.approx(0.5)   # precision 1/2, recall 1/2
    # the model said yes, yes, no, no; the rule says yes, no, yes, no -> agrees on 2 of 4
    assert agreement(rule, questions, ["Yes.", "yes", "No, there is not.", "no"]) == pytest.approx(0.5)


def test_false_yes_by_frequency_bins_no_questions_by_training_images():
    from mmrag.pipelines.analysis import false_yes_by_frequency, training_image_counts

    instances = {"categories": [{"id": 1, "name": "Noukre"}, {"id": 2, "name": "tree"}],
                 "annotations": [{"category_id": 1, "image_id": 5}, {"category_id": 1, "image_id": 5},  # one image, two boxes
                                 *({"category_id": 2, "image_id": i} for i in range(60))]}
    counts = training_image_counts(instances)
    assert counts == {"noukre": 1, "tree": 60}
    rows = [{"question": "Is there a noukre in the image?", "answer": "no", "prediction": "Yes."},   # 1-9: false yes
            {"question": "Is there a noukre in the image?", "answer": "no", "prediction": "No."},    # 1-9: right
            {"question": "Is there a tree in the image?", "answer": "no", "prediction": "No, there is not."},
            {"question": "Is there a tree in the image?", "answer": "yes", "prediction": "Yes."},   # a "yes" question: skipped
            {"question": "Is there an ulpax in the image?", "answer": "no", "prediction": "Yes"}]  # never seen: bin 0
    table = false_yes_by_frequency(rows, counts)
    assert list(table) == ["0", "1-9", "10-49", "50+"]
    assert table["0"] == {"false_yes": 1, "questions": 1, "rate": 1.0}
    assert table["1-9"] == {"false_yes": 1, "questions": 2, "rate": 0.5}
    assert table["50+"] == {"false_yes": 0, "questions": 1, "rate": 0.0}
    assert table["10-49"]["questions"] == 0 and table["10-49"]["rate"] != table["10-49"]["rate"]  # nan
