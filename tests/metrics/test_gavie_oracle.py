"""The world-oracle judge on a hand-made scene; every expected score worked out by hand in the comments."""
from __future__ import annotations

import pytest

from mmrag.metrics.gavie_oracle import WorldOracle

VOCAB = {
    "colours": ["red", "blue", "teal", "purple"], "patterns": ["plain", "striped", "dotted"],
    "shapes": ["round", "square"], "generic": ["tree", "cup", "cloud"],
    "numbers": ["zero", "one", "two", "three", "four", "five", "six"],
    "categories": {"creature": ["leg", "legs"], "vehicle": ["wheel", "wheels"]},
    "names": {"skouris": "creature", "drapeetim": "vehicle", "troukrux": "creature"},
    "fact_values": {"predator": ["sand vipers", "marsh herons"], "fuel": ["steam", "whale oil"]},
}
# centres x: skouris 15, tree 35, drapeetim 60, tree 85
SCENE = {"width": 96, "height": 96, "objects": [
    {"id": 1, "label": "skouris", "word": "creature", "box": [10, 10, 10, 10], "colour": "teal",
     "pattern": "dotted", "shape": "round", "parts": 6, "facts": {"predator": "sand vipers"}},
    {"id": 2, "label": "tree", "word": "tree", "box": [30, 40, 10, 10]},
    {"id": 3, "label": "drapeetim", "word": "vehicle", "box": [50, 10, 20, 10], "colour": "red",
     "pattern": "striped", "shape": "square", "parts": 4, "facts": {"fuel": "steam"}},
    {"id": 4, "label": "tree", "word": "tree", "box": [80, 0, 10, 10]},
]}


@pytest.fixture(scope="module")
def oracle():
    return WorldOracle(VOCAB)


DESCRIBE = "Describe the image in detail."


@pytest.mark.parametrize("question, answer, relevancy, accuracy", [
    # teal dotted creature: yes; red vehicle: yes; exactly two trees: yes -> 3/3
    (DESCRIBE, "The image shows a teal dotted creature, a red vehicle and two trees.", 10, 10),
    # purple creature: no; three trees: no -> 0/2
    (DESCRIBE, "There is a purple creature and three trees.", 10, 0),
    # teal creature with four legs: the only creature has six -> 0/1
    (DESCRIBE, "The creature is teal and has four legs.", 10, 0),
    # creature with six legs and a blue vehicle: 1/2
    (DESCRIBE, "A creature with six legs stands near a blue vehicle.", 10, 5),
    # relations by box centres: creature 15 < vehicle 60
    (DESCRIBE, "The creature is to the left of the vehicle.", 10, 10),
    (DESCRIBE, "The vehicle is to the left of the creature.", 10, 0),
    # "right of": the tree at 85 is right of the vehicle at 60
    (DESCRIBE, "A tree is to the right of the vehicle.", 10, 10),
    # naming: the creature is the skouris, not the troukrux
    (DESCRIBE, "The creature is a skouris.", 10, 10),
    (DESCRIBE, "The creature is a troukrux.", 10, 0),
    # count of all objects: four
    (DESCRIBE, "There are four objects in the image.", 10, 10),
    (DESCRIBE, "There are five objects in the image.", 10, 0),
    # a negated clause claims absence: no cloud (true), but a tree (true) -> 2/2
    (DESCRIBE, "There is no cloud in the image; it shows a tree.", 10, 10),
    (DESCRIBE, "There is no tree in the image.", 10, 0),
    # slot colour filled by a rejection of the premise; no cloud: true
    ("What colour is the cloud?", "There is no cloud in the image.", 10, 10),
    # slot colour not filled: talks about the cloud only (5 x 1/1); claims a cloud exists: false
    ("What colour is the cloud?", "The cloud is in the sky.", 5, 0),
    # knowledge: the subject comes from the question
    ("What animal hunts the creature?", "Sand vipers.", 10, 10),
    ("What animal hunts the creature?", "The creature is hunted by marsh herons.", 10, 0),
    # ", not" splits the clause; the denial of the true fact is false too -> 0/2
    ("What animal hunts the creature?", "The skouris is hunted by marsh herons, not sand vipers.", 10, 0),
    # and the correct version: herons denied (true), vipers asserted (true) -> 2/2
    ("What animal hunts the creature?", "The skouris is hunted by sand vipers, not marsh herons.", 10, 10),
    # a bare fact after a named entity is about that entity: the drapeetim runs on steam
    (DESCRIBE, "The vehicle is a drapeetim; it runs on steam.", 10, 10),
    (DESCRIBE, "The vehicle is a drapeetim; it runs on whale oil.", 10, 5),
    # yes/no: what the question asks (the relation), not what it presupposes
    ("Is the creature to the left of the tree?", "Yes.", 10, 10),
    ("Is the creature to the left of the tree?", "No.", 10, 0),
    # yes/no about a missing object: only the first object is asked, the vehicle is presupposed
    ("Is there a cloud next to the vehicle?", "No.", 10, 10),
    ("Is there a cloud next to the vehicle?", "Yes.", 10, 0),
    # counting slot: a number fills it; two trees is right
    ("How many trees are there?", "There are two trees.", 10, 10),
    ("How many trees are there?", "I can see one tree.", 10, 0),
    # a position among objects of one kind: the tree on the left is the one at 35, on the right the one at 85
    (DESCRIBE, "The tree on the left is to the left of the vehicle.", 10, 10),
    (DESCRIBE, "The tree on the right is to the left of the vehicle.", 10, 0),
    # naming across a position phrase, and a name that does not fit the kind: no tree is a skouris
    (DESCRIBE, "The creature on the left is a skouris.", 10, 10),
    (DESCRIBE, "The tree on the right is a skouris.", 10, 0),
    # an adverb before the copula: the creature here is teal (true), purple (false)
    (DESCRIBE, "The creature here is teal.", 10, 10),
    (DESCRIBE, "The creature here is purple.", 10, 0),
    # which side: slot 'side'; vehicle (60) is right of the creature (15)
    ("Is the vehicle to the left or to the right of the creature?", "The vehicle is to the right of the creature.",
     10, 10),
])
def test_hand_worked_scores(oracle, question, answer, relevancy, accuracy):
    verdict = oracle.judge(question, answer, SCENE)
    assert (verdict.relevancy, verdict.accuracy) == (relevancy, accuracy), verdict.reason


def test_no_checkable_claim_is_unscored_not_zero(oracle):
    verdict = oracle.judge(DESCRIBE, "I am not sure what this is.", SCENE)
    assert verdict.accuracy is None and verdict.relevancy == 0     # no object talked about
    assert oracle.judge(DESCRIBE, "", SCENE).accuracy is None


def test_off_topic_answer_is_irrelevant_but_can_be_accurate(oracle):
    # asked about the vehicle's wheels; the answer is true but about trees: coverage 0 of [vehicle], no slot
    verdict = oracle.judge("Describe the wheels of the vehicle.", "There are two trees.", SCENE)
    assert verdict.relevancy == 0 and verdict.accuracy == 10
