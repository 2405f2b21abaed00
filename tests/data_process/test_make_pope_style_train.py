"""make_pope_style_train on a hand-made COCO split: balanced labels, yes objects annotated in the
image, no objects absent, one strategy per image, the POPE task's wording, files written."""
from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from omegaconf import OmegaConf

from mmrag.cli.make_pope_style_train import main
from mmrag.datasets.pope_yesno import YesNoDataError, make_yes_no_files, mixed_pope_questions, to_llava
from mmrag.datasets.formats import read_llava_conversations
from tests.conftest import REPO_ROOT

NAMES = ["ball", "bird", "car", "cat", "dog", "road", "tree", "cup", "lamp"]
# image id -> annotated objects; image 9 has one object only (skipped at 2 per image), image 10 none
OBJECTS = {1: ["dog", "cat", "ball"], 2: ["dog", "cat", "tree"], 3: ["dog", "ball", "tree"], 4: ["car", "bird"],
           5: ["dog", "cat"], 6: ["dog", "cat", "ball", "lamp"], 7: ["car", "road"], 8: ["car", "road", "bird"],
           9: ["cup"], 10: [], 11: ["cup", "lamp", "tree"], 12: ["bird", "road"]}
QUESTION = re.compile(r"^<image>\nIs there a (.+) in the image\? Answer yes or no\.$")


def make_instances(objects):
    cat_id = {name: i + 1 for i, name in enumerate(NAMES)}
    annotations = [{"id": n + 1, "image_id": image_id, "category_id": cat_id[name], "bbox": [0, 0, 4, 4]}
                   for n, (image_id, name) in enumerate((i, o) for i, objs in objects.items() for o in objs)]
    return {"images": [{"id": i, "file_name": f"img{i:03d}.jpg", "width": 16, "height": 16} for i in objects],
            "annotations": annotations,
            "categories": [{"id": i, "name": n, "supercategory": "x"} for n, i in cat_id.items()]}


def parse(record):
    """(image file, object asked about, 'yes'/'no') of one LLaVA yes/no record."""
    human, gpt = record["conversations"]
    match = QUESTION.match(human["value"])
    assert match, human["value"]
    assert gpt["value"] in ("Yes.", "No.")
    return record["image"].split("/", 1)[1], match.group(1), gpt["value"][:-1].lower()


@pytest.fixture()
def world(tmp_path):
    (tmp_path / "annotations").mkdir()
    for split, objects in (("train", OBJECTS), ("test", {k: OBJECTS[k] for k in (1, 4, 7, 9)})):
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(make_instances(objects)))
    return tmp_path


def test_labels_balanced_and_true_to_the_annotations(world):
    main(["--world", str(world), "--per-image", "2", "--seed", "3"])
    records = read_llava_conversations(world / "llava" / "yesno_train.json")
    by_file = {f"img{i:03d}.jpg": set(objs) for i, objs in OBJECTS.items()}
    asked = [parse(r) for r in records]
    assert Counter(label for _, _, label in asked) == {"yes": 20, "no": 20}   # 10 images with >= 2 objects
    for image, obj, label in asked:
        assert (obj in by_file[image]) == (label == "yes"), (image, obj, label)
    per_image = Counter((image, label) for image, _, label in asked)
    assert set(per_image.values()) == {2}
    assert {image for image, _, _ in asked} == {f for f, objs in by_file.items() if len(objs) >= 2}
    assert len({r["id"] for r in records}) == len(records)
    assert all(r["image"].startswith("images/img") for r in records)


def test_each_image_takes_one_strategy_and_all_strategies_appear():
    rows = mixed_pope_questions(make_instances(OBJECTS), per_image=2, seed=0)
    for image in {r["image"] for r in rows}:
        assert len({r["strategy"] for r in rows if r["image"] == image}) == 1
    assert {r["strategy"] for r in rows} == {"random", "popular", "adversarial"}


def test_popular_negatives_are_the_most_frequent_absent_objects():
    # images per object in OBJECTS, counted by hand: dog 5, cat 4, then ball/tree/car/bird/road 3 each,
    # cup/lamp 2. An image without dog and cat gets exactly {dog, cat} as its popular negatives.
    for seed in range(4):
        rows = [r for r in mixed_pope_questions(make_instances(OBJECTS), per_image=2, seed=seed) if r["strategy"] == "popular"]
        for image in {r["image"] for r in rows}:
            objects = set(OBJECTS[int(str(image)[3:6])])
            negatives = {str(r["text"]).split("a ", 1)[1].split(" in")[0] for r in rows if r["image"] == image and r["label"] == "no"}
            if not objects & {"dog", "cat"}:
                assert negatives == {"dog", "cat"}, (image, negatives)


def test_wording_matches_the_pope_task_at_inference():
    cfg = OmegaConf.load(REPO_ROOT / "eval_configs" / "pope_zeroshot.yaml")
    row = {"image": "a.jpg", "text": "Is there a cat in the image?", "label": "no"}
    record = to_llava([row])[0]
    assert record["conversations"][0]["value"] == "<image>\n" + row["text"] + cfg.evaluation.prompt_suffix
    assert record == {"id": "a_yesno_0", "image": "images/a.jpg", "conversations": record["conversations"]}


def test_test_split_written_and_missing_split_named(world):
    main(["--world", str(world), "--splits", "test", "--per-image", "2"])
    asked = [parse(r) for r in read_llava_conversations(world / "llava" / "yesno_test.json")]
    assert sorted({image for image, _, _ in asked}) == ["img001.jpg", "img004.jpg", "img007.jpg"]
    with pytest.raises(YesNoDataError, match="instances_val.json"):
        make_yes_no_files({"world": str(world), "splits": ["val"], "per_image": 2, "seed": 0})
    with pytest.raises(SystemExit, match="error: .*instances_val.json"):   # the CLI: one line, no traceback
        main(["--world", str(world), "--splits", "val"])
