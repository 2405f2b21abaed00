"""LRV, Visual Genome and MME readers on hand-written fixtures; the dense-caption layout's field order."""
import json

import pytest

from mmrag.common.errors import DataFormatError
from mmrag.datasets.lrv_formats import (
    lrv_to_llava, parse_region_line, read_lrv_instructions, read_mme, read_vg_region_descriptions, region_box_problems,
    region_line,
)


def test_region_line_puts_width_then_height_in_their_own_fields():
    region = {"phrase": "a red tool", "x": 15, "y": 65, "width": 20, "height": 27, "region_id": 1}
    assert region_line(region) == "a red tool X: 15 Y: 65 Width: 20 Height: 27"
    assert parse_region_line("a tall tree X: 3 Y: 4.5 Width: 10 Height: 80") == \
        {"phrase": "a tall tree", "x": 3, "y": 4.5, "width": 10, "height": 80}
    with pytest.raises(DataFormatError):
        parse_region_line("a tree X: 3 Y: 4 Height: 80 Width: 10")


def test_region_lines_round_trip_on_the_world(tmp_path):
    vg = [{"id": 7, "regions": [{"region_id": 1, "image_id": 7, "phrase": "a man riding a horse", "x": 10, "y": 20,
                                 "width": 300, "height": 40},
                                {"region_id": 2, "image_id": 7, "phrase": "blue sky", "x": 0, "y": 0, "width": 500,
                                 "height": 90}]},
          {"id": 8, "regions": [{"region_id": 3, "image_id": 8, "phrase": "a cup", "x": 90, "y": 90, "width": 20,
                                 "height": 20}]}]
    path = tmp_path / "region_descriptions.json"
    path.write_text(json.dumps(vg))
    regions = read_vg_region_descriptions(path)
    assert sorted(regions) == ["7", "8"]
    for r in regions["7"]:
        back = parse_region_line(region_line(r))
        assert (back["x"], back["y"], back["width"], back["height"]) == (r["x"], r["y"], r["width"], r["height"])
    problems = region_box_problems(regions, {"7": (500, 333)})
    # image 8's size is unknown; region 3 is not checked; regions of image 7 are inside 500x333
    assert problems == ["image 8: size unknown, its 1 regions not checked"]
    problems = region_box_problems(regions, {"7": (400, 333), "8": (100, 100)})
    assert len(problems) == 2 and "region 2" in problems[0] and "region 3" in problems[1]


def test_lrv_reader_accepts_released_shapes(tmp_path):
    train = [{"image_id": "2392588", "question": "Can you see a blue teapot?", "answer": "There is no teapot.",
              "task": "negative"}, {"image_id": 5, "question": "How many cats?", "answer": "Two.", "task": "count"}]
    (tmp_path / "a.json").write_text(json.dumps(train))
    (tmp_path / "b.json").write_text(json.dumps({"annotations": train}))
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in train) + "\n")
    for name in ("a.json", "b.json", "c.jsonl"):
        records = read_lrv_instructions(tmp_path / name)
        assert [r["image_id"] for r in records] == ["2392588", "5"]
        assert records[0]["task"] == "negative" and records[1]["answer"] == "Two."
    (tmp_path / "eval.json").write_text(json.dumps([{"image_id": "2380160", "instruction": "Identify the road."}]))
    assert read_lrv_instructions(tmp_path / "eval.json", require_answer=False) == \
        [{"image_id": "2380160", "question": "Identify the road.", "answer": "", "task": ""}]
    with pytest.raises(DataFormatError, match="item 0 .*answer"):
        read_lrv_instructions(tmp_path / "eval.json")
    llava = lrv_to_llava(read_lrv_instructions(tmp_path / "a.json"), lambda i: f"VG/{i}.jpg")
    assert llava[1]["image"] == "VG/5.jpg"
    assert llava[1]["conversations"] == [{"from": "human", "value": "<image>\nHow many cats?"},
                                         {"from": "gpt", "value": "Two."}]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_mme_reader_flat_and_split_layouts(tmp_path):
    _write(tmp_path / "existence" / "000001.txt",
           "Is there a dog in this image? Please answer yes or no.\tYes\nIs there a cat in this image? Please answer yes or no.\tNo\n")
    _write(tmp_path / "existence" / "000001.jpg", "x")
    _write(tmp_path / "artwork" / "questions_answers_YN" / "10002.txt", "Is it a painting?\tYes\r\nIs it glass?\tNo\r\n")
    _write(tmp_path / "artwork" / "images" / "10002.png", "x")
    items = read_mme(tmp_path)
    assert [(i["subtask"], i["image"], i["answer"], i["pair"]) for i in items] == [
        ("artwork", "artwork/images/10002.png", "yes", "artwork/10002"),
        ("artwork", "artwork/images/10002.png", "no", "artwork/10002"),
        ("existence", "existence/000001.jpg", "yes", "existence/000001"),
        ("existence", "existence/000001.jpg", "no", "existence/000001")]
    assert items[1]["question"] == "Is it glass?"
    _write(tmp_path / "count" / "1.txt", "How many?\tmaybe\n")
    _write(tmp_path / "count" / "1.jpg", "x")
    with pytest.raises(DataFormatError, match=r"1.txt: line 1"):
        read_mme(tmp_path, ["count"])
    _write(tmp_path / "color" / "2.txt", "Is it red?\tYes\n")
    with pytest.raises(DataFormatError, match="no image 2"):
        read_mme(tmp_path, ["color"])
