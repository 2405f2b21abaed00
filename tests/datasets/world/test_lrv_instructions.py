"""LRV instructions on the tiny world, checked against the annotation files by an oracle written here.

The oracle reads instances_*.json and entities.json directly (not through the module under test) and
evaluates every claim: positives must hold, every negative's premise must be false.
"""
import json
from collections import Counter
from pathlib import Path

import pytest

from mmrag.datasets.world.lrv_instructions import MME_SUBTASKS, write_lrv_instructions

NEGATIVE_TASKS = {"negative_nonexistent_object", "negative_nonexistent_attribute", "negative_nonexistent_relation",
                  "negative_existent_attribute", "negative_knowledge"}
POSITIVE_TASKS = {"description", "existence", "counting", "attribute", "relation", "knowledge"}


@pytest.fixture(scope="module")
def lrv_world(tiny_world, tmp_path_factory):
    world, _ = tiny_world
    counts = write_lrv_instructions(world, 0)
    items = {s: [json.loads(l) for l in (world / "lrv" / f"items_{s}.jsonl").read_text().splitlines()]
             for s in ("train", "val", "test")}
    return world, counts, items


class Oracle:
    """The scene graph from the raw files: annotation id -> (image, word, box, entity record)."""

    def __init__(self, world: Path) -> None:
        entities = {e["name"]: e for e in json.loads((world / "entities.json").read_text())}
        self.entities_by_id = {e["id"]: e for e in entities.values()}
        self.objects = {}          # ann id -> dict
        self.by_image = {}         # image id string -> [ann ids]
        for split in ("train", "test"):
            data = json.loads((world / "annotations" / f"instances_{split}.json").read_text())
            names = {c["id"]: c["name"] for c in data["categories"]}
            files = {i["id"]: i["file_name"][:-4] for i in data["images"]}
            for ann in data["annotations"]:
                name = names[ann["category_id"]]
                entity = entities.get(name)
                image = files[ann["image_id"]]
                self.objects[ann["id"]] = {"image": image, "word": entity["category"] if entity else name,
                                           "box": ann["bbox"], "entity": entity}
                self.by_image.setdefault(image, []).append(ann["id"])

    def holds(self, image: str, claim: dict) -> bool:
        objs = [self.objects[a] for a in self.by_image[image]]
        kind = claim["kind"]
        if kind == "exists":
            return any(o["word"] == claim["word"] for o in objs)
        if kind == "exists_with":
            return any(o["word"] == claim["word"] and o["entity"]["signature"][claim["attribute"]] == claim["value"]
                       for o in objs if o["entity"])
        if kind == "count":
            return sum(claim["word"] in (None, o["word"]) for o in objs) == claim["value"]
        if kind in ("attribute", "fact"):
            obj = self.objects[claim["object"]]
            assert obj["image"] == image
            if kind == "fact":
                return obj["entity"]["facts"][claim["attribute"]] == claim["value"]
            key = {"colour": "colour", "pattern": "pattern", "shape": "shape", "parts": "parts"}[claim["attribute"]]
            return str(obj["entity"]["signature"][key]) == claim["value"]
        if kind == "left_of":
            a, b = self.objects[claim["a"]], self.objects[claim["b"]]
            assert a["image"] == image and b["image"] == image
            return a["box"][0] + a["box"][2] / 2 < b["box"][0] + b["box"][2] / 2
        raise AssertionError(f"unknown claim {claim}")


def test_positive_claims_hold_and_negative_premises_are_false(lrv_world):
    world, _, items = lrv_world
    oracle = Oracle(world)
    seen = Counter()
    for split_items in items.values():
        for item in split_items:
            seen[item["task"]] += 1
            if item["polarity"] == "positive":
                assert item["task"] in POSITIVE_TASKS
                assert item["claims"], item
                for claim in item["claims"]:
                    assert oracle.holds(item["image_id"], claim), (item["question"], claim)
                for keyword in item["keywords"]:
                    assert keyword.lower() in item["answer"].lower(), item
            else:
                assert item["task"] in NEGATIVE_TASKS
                assert not oracle.holds(item["image_id"], item["premise"]), (item["question"], item["premise"])
    assert set(seen) == POSITIVE_TASKS | NEGATIVE_TASKS, seen


def test_negative_questions_carry_the_false_element_and_knowledge_comes_from_another_entity(lrv_world):
    world, _, items = lrv_world
    oracle = Oracle(world)
    for item in [i for s in items.values() for i in s if i["polarity"] == "negative"]:
        premise, question = item["premise"], item["question"].lower()
        if premise["kind"] in ("exists",):
            assert premise["word"] in question
        elif premise["kind"] in ("exists_with", "fact") or premise.get("attribute") in ("colour", "pattern", "shape"):
            assert premise["value"].lower() in question, item
        if item["task"] == "negative_knowledge":
            donor = oracle.entities_by_id[item["source_entity"]]
            target = oracle.objects[premise["object"]]["entity"]
            assert donor["id"] != target["id"] and donor["facts"][premise["attribute"]] == premise["value"]
            assert target["facts"][premise["attribute"]] != premise["value"]


def test_answers_short_and_each_negative_in_both_forms(lrv_world):
    _, _, items = lrv_world
    forms = Counter()
    for item in [i for s in items.values() for i in s]:
        assert len(item["answer"].split()) < 30, item["answer"]
        if item["polarity"] == "negative":
            forms[(item["image_id"], item["task"], item["form"])] += 1
    for (image, task, form), n in forms.items():
        other = "declarative" if form == "interrogative" else "interrogative"
        assert forms[(image, task, other)] == n == 1


def test_splits_files_and_val_images(lrv_world):
    world, counts, items = lrv_world
    lrv = world / "lrv"
    val_world = {r["image"][len("images/"):-4] for r in json.loads((world / "llava/yesno_balanced_val.json").read_text())}
    val_lrv = {i["image_id"] for i in items["val"]}
    assert val_world and val_world <= val_lrv
    test_world = {i["file_name"][:-4] for i in json.loads((world / "annotations/instances_test.json").read_text())["images"]}
    assert {i["image_id"] for i in items["test"]} == test_world
    assert not val_lrv & {i["image_id"] for i in items["train"]}
    for split in ("train", "val", "test"):
        released = json.loads((lrv / f"instructions_{split}.json").read_text())
        assert all(set(r) == {"image_id", "question", "answer", "task"} for r in released)
        assert len(released) == len(items[split])
        for polarity in ("positive", "negative"):
            llava = json.loads((lrv / f"llava_{polarity}_{split}.json").read_text())
            assert len(llava) == counts[f"{polarity}_{split}"] > 0
            first = llava[0]
            assert first["conversations"][0]["value"].startswith("<image>\n")
            assert (world / first["image"]).is_file()


def test_mme_layout_pairs(lrv_world):
    world, counts, _ = lrv_world
    mme = world / "lrv" / "mme"
    n = 0
    for subtask in MME_SUBTASKS:
        for txt in sorted((mme / subtask).glob("*.txt")):
            lines = txt.read_text().splitlines()
            assert [l.split("\t")[1] for l in lines] == ["Yes", "No"]
            assert all(l.split("\t")[0].endswith("Please answer yes or no.") for l in lines)
            assert (mme / subtask / (txt.stem + ".jpg")).is_file()
            n += 1
    assert n == counts["mme_pairs_test"] > 0


def test_deterministic(lrv_world, tmp_path):
    world, _, _ = lrv_world
    before = (world / "lrv" / "items_train.jsonl").read_bytes()
    write_lrv_instructions(world, 0)
    assert (world / "lrv" / "items_train.jsonl").read_bytes() == before
