"""The typed benchmark: answers against a hand-made scene, the oracle check, splits, determinism."""
from __future__ import annotations

import json
import random
import shutil

from mmrag.datasets import dataengine_items as de
from mmrag.datasets.world import typed_benchmark as tb
from mmrag.datasets.world.entities import Entity, Signature
from mmrag.datasets.world.scenes import Scene, SceneObject


def hand_scene() -> tb.SceneGraph:
    """96 px: a blue striped creature on the left (centre x 20), a tree on the right (centre x 80),
    a red plain creature at the bottom middle (centre 50, 80)."""
    blue = Entity("e1", "zorblat", "creature", Signature("round", "blue", "red", "striped", 4),
                  {"diet": "river reeds", "habitat": "dry canyons", "predator": "hawk owls", "origin": "Dunmere"}, 20)
    red = Entity("e2", "quimbel", "creature", Signature("square", "red", "blue", "plain", 2),
                 {"diet": "wild oats", "habitat": "salt flats", "predator": "fire ants", "origin": "Brannoch"}, 21)
    objects = [SceneObject("zorblat", "creature", (10, 20, 20, 20), blue), SceneObject("tree", "tree", (70, 10, 20, 30)),
               SceneObject("quimbel", "creature", (40, 70, 20, 20), red)]
    scene = Scene(0, "train", objects, (0, 0, 0), (0, 0, 0), 0.0)
    return tb.SceneGraph(scene, "images/x.jpg", 96, ["A picture."])


def item(qtype, question, answer):
    return {"id": "x", "instruction": question, "short_answer": answer, "qtype": qtype}


def test_oracle_check_by_hand():
    g = hand_scene()
    accepted = [("count", "How many creatures are in the image?", "two"), ("count", "How many objects are in the image?", "3"),
                ("existence", "Is there a tree in the image?", "yes"), ("existence", "Is there a cup in the image?", "no"),
                ("attribute", "What colour is the striped creature?", "blue"),
                ("attribute", "Which pattern covers the body of the red creature?", "plain"),
                ("spatial", "Where is the tree relative to the blue creature?", "right"),
                ("spatial", "Where is the red creature relative to the tree?", "below"),
                ("identity", "What is the name of the striped creature?", "zorblat"),
                ("knowledge", "What does the red creature eat?", "wild oats"),
                ("knowledge", "Which predator preys on the blue creature?", "hawk owls")]
    for qtype, question, answer in accepted:
        assert tb.check_item(item(qtype, question, answer), g) == (True, "ok"), question
    wrong = [("count", "How many creatures are in the image?", "three"), ("spatial", "Where is the tree relative to the blue creature?", "left"),
             ("knowledge", "What does the red creature eat?", "river reeds"), ("identity", "What is the name of the red creature?", "zorblat")]
    for qtype, question, answer in wrong:
        ok, cause = tb.check_item(item(qtype, question, answer), g)
        assert not ok and cause.startswith("wrong answer"), question
    ok, cause = tb.check_item(item("identity", "What is the name of the creature?", "zorblat"), g)  # two creatures
    assert not ok and cause.startswith("unverifiable")


def test_builders_answer_the_hand_scene():
    g = hand_scene()
    maker = tb.ItemMaker({"creature": ["zorblat", "quimbel", "drikreel", "troukrux"], "plant": [], "tool": [], "vehicle": []})
    rng = random.Random(0)
    for qtype in tb.QTYPES:
        for n in range(20):
            it = maker.make(qtype, g, rng, f"x_{qtype}_{n}")
            assert de.item_problem(it, tb.QTYPES) is None
            assert tb.check_item(it, g) == (True, "ok"), it
    it = maker.make("count", g, rng, "c", subtype="objects")
    assert it["short_answer"] == "three" and it["options"][de.LETTERS.index(it["choice_answer"])] == "three"
    it = maker.make("existence", g, rng, "e", subtype="absent")
    assert it["short_answer"] == "no"


def test_written_benchmark_is_deterministic_and_complete(tiny_world, tmp_path):
    world, _ = tiny_world
    copy = tmp_path / "world"
    shutil.copytree(world, copy, ignore=shutil.ignore_patterns("dataengine"))
    counts = tb.write_typed_benchmark(copy, 0)
    first = {p.name: p.read_bytes() for p in (copy / "dataengine").iterdir()}
    tb.write_typed_benchmark(copy, 0)
    assert {p.name: p.read_bytes() for p in (copy / "dataengine").iterdir()} == first
    assert json.loads(first["counts.json"]) == counts
    images = {s: {it["image"] for it in json.loads(first[f"items_{s}.json"])} for s in tb.SPLITS}
    assert not images["train"] & images["val"] and not images["train"] & images["test"]
    assert counts["val"]["images"] >= 1 and counts["test"]["images"] == 15   # tiny: 60 images, 25% test
    for split in tb.SPLITS:
        items = json.loads(first[f"items_{split}.json"])
        assert {it["qtype"] for it in items} == set(tb.QTYPES)
        assert len(first[f"eval_mc_shuffled_{split}.jsonl"].splitlines()) == len(items)
        assert len(json.loads(first[f"llava_direct_{split}.json"])) == len(items)
    tb.write_typed_benchmark(copy, 1)
    assert (copy / "dataengine" / "items_test.json").read_bytes() != first["items_test.json"]
