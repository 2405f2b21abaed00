"""The name-only rule on a hand-made training file, and what the RAG neighbours of a hand-built image
database hold; expected answers, neighbours and shares worked out by hand."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrag.pipelines.analysis import (NameOnlyRule, agreement, image_objects, name_only_scores, neighbour_presence,
                                      neighbour_table, object_name, rag_neighbours)
from mmrag.retrieval.dense_index import DenseIndex, build_database
from mmrag.retrievers.image_database import ImageDatabaseRetriever


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


# ----------------------------------------------------------------------------- what the RAG neighbours hold
# Five training images with hand-set 3-d unit vectors and boxes (N = 5; cat, dog and owl each in 2 images):
#   t1 [1, 0, 0]       {cat, dog}   caption names cat
#   t2 [.8, .6, 0]     {cat}
#   t3 [0, 1, 0]       {owl}
#   t4 [0, .8, .6]     {} (no box)  caption names dog and poster
#   t5 [0, 0, 1]       {dog, owl}   caption "catalogue": not the word cat
# Queries: q1 [.96, .28, 0] -> cosines t1 .96, t2 .936, t3 .28, t4 .224, t5 0  -> t1, t2
#          q2 [0, .28, .96] -> t1 0, t2 .168, t3 .28, t4 .8, t5 .96           -> t5, t4
#          t3 itself (a database image): excluded by id -> t4 .8, t2 .6        -> t4, t2
TRAIN_VECTORS = {"t1": [1, 0, 0], "t2": [0.8, 0.6, 0], "t3": [0, 1, 0], "t4": [0, 0.8, 0.6], "t5": [0, 0, 1]}
QUERY_VECTORS = {"q1": [0.96, 0.28, 0], "q2": [0, 0.28, 0.96], **TRAIN_VECTORS}
CAPTIONS = {"t1": "A picture of a cat.", "t2": "A picture of an animal.", "t3": "A picture of a bird.",
            "t4": "A picture of a dog on a poster.", "t5": "A picture of a catalogue."}
INSTANCES = {"images": [{"id": i, "file_name": f"{name}.jpg"} for i, name in enumerate(TRAIN_VECTORS)],
             "categories": [{"id": 1, "name": "Cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "owl"}],
             "annotations": [{"image_id": 0, "category_id": 1}, {"image_id": 0, "category_id": 2},
                             {"image_id": 1, "category_id": 1}, {"image_id": 1, "category_id": 1},   # two cat boxes
                             {"image_id": 2, "category_id": 3}, {"image_id": 4, "category_id": 2},
                             {"image_id": 4, "category_id": 3}]}


def pope(qid, image, name, label, article="a"):
    return {"question_id": qid, "image": f"{image}.jpg", "text": f"Is there {article} {name} in the image?", "label": label}


QUESTIONS = [pope(1, "q1", "cat", "yes"),    # t1, t2 both hold cat; t1's caption names it
             pope(2, "q1", "dog", "no"),     # t1 holds dog, t2 not; no caption names dog
             pope(3, "q2", "dog", "yes"),    # t5 holds dog, t4 not; t4's caption names dog
             pope(4, "q2", "cat", "no"),     # neither holds cat; "catalogue" is not "cat"
             pope(5, "t3", "owl", "no", "an"),   # t3 itself excluded: t4, t2 hold no owl
             pope(6, "q2", "poster", "no"),  # no training image holds a poster; t4's caption names it
             {"question_id": 7, "image": "q1.jpg", "text": "What colour is it?", "label": "yes"}]   # not POPE: skipped


class VectorsByStem:
    """Image path -> the hand-set vector of its file stem (the database's CLIP stand-in)."""

    def encode_images(self, paths):
        return np.asarray([QUERY_VECTORS[Path(p).stem] for p in paths], dtype=np.float32)


@pytest.fixture
def neighbour_world(tmp_path):
    items = [{"id": name, "image": f"images/{name}.jpg", "caption": CAPTIONS[name]} for name in TRAIN_VECTORS]
    build_database(tmp_path / "db", np.asarray(list(TRAIN_VECTORS.values()), dtype=np.float32), items,
                   image_root=tmp_path / "world", progress=False)
    retriever = ImageDatabaseRetriever(DenseIndex.load(tmp_path / "db", VectorsByStem()))
    return tmp_path, retriever


def test_rag_neighbours_are_the_evaluations_best_k_without_the_query_itself(neighbour_world):
    root, retriever = neighbour_world
    found = rag_neighbours(QUESTIONS, root / "world" / "images", root / "db", 2, retriever=retriever)
    assert [[item["id"] for item in items] for items in found] == [
        ["t1", "t2"], ["t1", "t2"], ["t5", "t4"], ["t5", "t4"], ["t4", "t2"], ["t5", "t4"], ["t1", "t2"]]
    assert found[2][1]["caption"] == "A picture of a dog on a poster."
    # RAG's threshold: cosine >= .95 keeps t1 (.96) for q1, t5 (.96) for q2, nothing for t3
    kept = rag_neighbours(QUESTIONS[:5], root / "world" / "images", root / "db", 2, threshold=0.95, retriever=retriever)
    assert [[item["id"] for item in items] for items in kept] == [["t1"], ["t1"], ["t5"], ["t5"], []]


def test_neighbour_presence_matches_hand_worked_shares(neighbour_world):
    root, retriever = neighbour_world
    objects = image_objects(INSTANCES)
    assert objects == {"t1.jpg": {"cat", "dog"}, "t2.jpg": {"cat"}, "t3.jpg": {"owl"}, "t4.jpg": frozenset(),
                       "t5.jpg": {"dog", "owl"}}
    found = rag_neighbours(QUESTIONS, root / "world" / "images", root / "db", 2, retriever=retriever)
    presence = neighbour_presence(QUESTIONS, found, objects, 2)
    # chance that >= 1 of 2 random images (of 5) holds a name in 2 of them: 1 - (3/5)(2/4) = 0.7; poster: 0
    # yes: Q1 (holds 2/2, caption), Q3 (1/2, caption); base rates .4, .4
    assert presence["yes"] == pytest.approx({"questions": 2, "any_holds": 1.0, "mean_holds": 0.75, "caption_names": 1.0,
                                             "base_rate": 0.4, "chance_any": 0.7})
    # no: Q2 (1/2), Q4 (0), Q5 (0), Q6 (0, caption); base rates .4 .4 .4 0; chance .7 .7 .7 0
    assert presence["no"] == pytest.approx({"questions": 4, "any_holds": 0.25, "mean_holds": 0.125,
                                            "caption_names": 0.25, "base_rate": 0.3, "chance_any": 0.525})
    table = neighbour_table({"random": presence}, 2)
    assert table[2] == "| random, yes | 2 | 100.0 | 75.0 | 70.0 | 40.0 | 100.0 |"
    assert table[3] == "| random, no | 4 | 25.0 | 12.5 | 52.5 | 30.0 | 25.0 |"


def test_a_neighbour_outside_the_annotations_is_refused():
    from mmrag.common.errors import DataFormatError

    with pytest.raises(DataFormatError, match="'t9.jpg' .*question 1.*instances_train.json"):
        neighbour_presence(QUESTIONS[:1], [[{"image": "images/t9.jpg", "caption": ""}]], image_objects(INSTANCES), 2)


# neighbour holds the asked object (from the hand-worked ids above): Q1 yes holds, Q2 no holds, Q3 yes holds,
# Q4 / Q5 / Q6 no lack; Q7 is not a POPE question
ZERO_SHOT = ["Yes.", "No", "No", "No", "Yes", "no", "red"]             # right: Q1 Q2 . Q4 . Q6
RAG = ["Yes", "Yes, there is.", "Yes", "No", "No", "Yes", "red"]        # right: Q1 . Q3 Q4 Q5 .


def test_accuracy_where_a_neighbour_holds_the_object_and_where_none_does(neighbour_world):
    from mmrag.pipelines.analysis import accuracy_by_neighbours, neighbour_accuracy_table

    root, retriever = neighbour_world
    found = rag_neighbours(QUESTIONS, root / "world" / "images", root / "db", 2, retriever=retriever)
    table = accuracy_by_neighbours(QUESTIONS, found, image_objects(INSTANCES), {"zero": ZERO_SHOT, "rag": RAG},
                                   ("rag", "zero"))
    yes_holds = table["yes"]["holds"]   # Q1, Q3: zero right on 1 of 2, RAG on both
    assert (yes_holds["questions"], yes_holds["accuracy"]) == (2, {"zero": 0.5, "rag": 1.0})
    assert yes_holds["difference"]["diff"] == pytest.approx(0.5) and yes_holds["difference"]["n"] == 2
    assert table["yes"]["lacks"] == {"questions": 0, "difference": None, "accuracy": {}}
    no_holds = table["no"]["holds"]     # Q2: zero right, RAG wrong -> -1 on every resample
    assert no_holds["accuracy"] == {"zero": 1.0, "rag": 0.0}
    assert (no_holds["difference"]["low"], no_holds["difference"]["high"]) == (-1.0, -1.0)
    no_lacks = table["no"]["lacks"]     # Q4, Q5, Q6: zero right on Q4, Q6; RAG on Q4, Q5
    assert no_lacks["questions"] == 3 and no_lacks["accuracy"] == pytest.approx({"zero": 2 / 3, "rag": 2 / 3})
    assert no_lacks["difference"]["diff"] == pytest.approx(0.0)
    rows = neighbour_accuracy_table({"random": table}, ["zero", "rag"], "rag minus zero")
    assert rows[0] == ("| split, gold answer, a neighbour holds the object | questions | zero, acc % | rag, acc % "
                       "| rag minus zero, points |")
    assert "| random, no, yes | 1 | 100.0 | 0.0 | -100.0 [-100.0, -100.0] |" in rows
    assert "| random, yes, no | 0 | - | - | - |" in rows


def test_recorded_neighbours_must_match_in_order(neighbour_world):
    from mmrag.pipelines.analysis import recorded_neighbours_agree

    root, retriever = neighbour_world
    found = rag_neighbours(QUESTIONS[:3], root / "world" / "images", root / "db", 2, retriever=retriever)
    answers = [{"question_id": 1, "retrieved": [{"id": "t1", "score": 0.96}, {"id": "t2", "score": 0.936}]},
               {"question_id": 2, "retrieved": [{"id": "t2"}, {"id": "t1"}]}]   # other order; Q3 not recorded
    assert recorded_neighbours_agree(found, QUESTIONS[:3], answers) == (1, 2)
