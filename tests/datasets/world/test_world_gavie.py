"""The world's GAVIE set on the tiny world: scenes and boxes against the raw annotation files, and the
oracle judge against the LRV writer's own claims (two independent readings of the same scene graph)."""
import json
import re

import pytest

from mmrag.common.errors import DataFormatError, MissingPathError
from mmrag.datasets.world.gavie import write_gavie
from mmrag.datasets.world.lrv_instructions import write_lrv_instructions
from mmrag.metrics.gavie import OracleJudge


@pytest.fixture(scope="module")
def gavie_world(tiny_world):
    world, _ = tiny_world
    write_lrv_instructions(world, 0)
    counts = write_gavie(world, 0)
    items = [json.loads(line) for line in (world / "gavie" / "items_test.jsonl").read_text().splitlines()]
    return world, counts, items


def test_counts_and_item_fields(gavie_world):
    world, counts, items = gavie_world
    lrv = (world / "lrv" / "items_test.jsonl").read_text().splitlines()
    assert counts["items_test"] == len(items) == len(lrv) > 0
    assert {"question_id", "image", "question", "answer", "annotations", "scene", "vocabulary"} <= set(items[0])
    assert json.loads((world / "gavie" / "vocabulary.json").read_text()) == json.loads(open(items[0]["vocabulary"]).read())


def test_scene_boxes_and_caption_layout_match_the_raw_files(gavie_world):
    world, _, items = gavie_world
    instances = json.loads((world / "annotations" / "instances_test.json").read_text())
    boxes = {a["id"]: a["bbox"] for a in instances["annotations"]}
    regions = {r["image_id"]: r["regions"] for r in json.loads((world / "regions" / "region_descriptions.json").read_text())}
    for item in items[:40]:
        for obj in item["scene"]["objects"]:
            assert obj["box"] == boxes[obj["id"]]
        caption_lines = [l for l in item["annotations"].splitlines() if not l.startswith("Fact:")]
        for line, region in zip(caption_lines, regions[item["image_id"]]):
            # X, Y, Width, Height in that order, and the height field holds the height
            m = re.fullmatch(r"(.*) X: (\d+) Y: (\d+) Width: (\d+) Height: (\d+)", line)
            assert m and m.group(1) == region["phrase"]
            assert [int(m.group(k)) for k in (2, 3, 4, 5)] == [region["x"], region["y"], region["width"], region["height"]]


def test_oracle_gives_reference_answers_full_marks_and_grades_yes_no_by_polarity(gavie_world):
    _, _, items = gavie_world
    judge = OracleJudge()
    grades = [g[0] for g in judge.judge(items, [[it["answer"]] for it in items])]
    assert all((g.relevancy, g.accuracy) == (10, 10) for g in grades), \
        [(it["question"], it["answer"], g.accuracy_reason) for it, g in zip(items, grades) if g.accuracy != 10][:3]
    # yes/no questions: the LRV writer's polarity says which bare answer is right
    yes_no = [it for it in items if re.match(r"^(Is|Are|Can|Does|Do)\b", it["question"]) and " or " not in it["question"]]
    assert yes_no
    for answer, right_for in (("Yes.", "positive"), ("No.", "negative")):
        graded = [g[0] for g in judge.judge(yes_no, [[answer]] * len(yes_no))]
        assert [g.accuracy for g in graded] == [10.0 if it["polarity"] == right_for else 0.0 for it in yes_no]


def test_needs_the_lrv_instructions_first(tmp_path, tiny_world):
    import shutil

    world, _ = tiny_world
    copy = tmp_path / "w"
    shutil.copytree(world, copy, ignore=shutil.ignore_patterns("images", "lrv", "gavie"))
    with pytest.raises(MissingPathError, match="items_val.jsonl"):
        write_gavie(copy, 0)


def test_a_region_box_outside_the_image_is_an_error_naming_it(tmp_path, tiny_world):
    import shutil

    world, _ = tiny_world
    copy = tmp_path / "w"
    shutil.copytree(world, copy, ignore=shutil.ignore_patterns("images", "gavie"))
    path = copy / "regions" / "region_descriptions.json"
    regions = json.loads(path.read_text())
    regions[0]["regions"][0]["width"] = 500
    path.write_text(json.dumps(regions))
    with pytest.raises(DataFormatError, match=f"{regions[0]['image_id']} region"):
        write_gavie(copy, 0)
