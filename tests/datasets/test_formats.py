"""Readers accept well-formed files in the real formats and reject malformed rows naming file and place."""
import json

import pytest

from mmrag.datasets import formats
from mmrag.datasets.formats import DataFormatError


def _json(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


# ----------------------------------------------------------------------------- corpus CSV
@pytest.mark.parametrize("header", ["id", "kid"])
def test_corpus_csv_round_trip_with_both_headers(tmp_path, header):
    rows = [("7", 'a passage, with "quotes" and commas'), ("8", "second passage")]
    path = tmp_path / "corpus.csv"
    path.write_bytes(formats.corpus_csv_bytes(rows, id_column=header))
    assert formats.read_corpus_csv(path) == [formats.Passage(*r) for r in rows]


@pytest.mark.parametrize("body,message", [
    ("id,text\n1,hello\n2,\n", "line 3: expected non-empty text for passage '2'"),
    ("id,text\n1,hello\n2,world\n1,again\n", "line 4: expected a unique id; '1' already appears on line 2"),
    ("id,text\n1,hello,extra\n", "line 2: expected 2 fields"),
    ("passage,text\n1,hello\n", "line 1: expected header 'id,text' or 'kid,text'"),
    ("id,text\n,hello\n", "line 2: expected a non-empty passage id"),
])
def test_corpus_csv_rejects_bad_rows_with_line_number(tmp_path, body, message):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(DataFormatError) as err:
        formats.read_corpus_csv(path)
    assert str(path) in str(err.value) and message in str(err.value)


# ----------------------------------------------------------------------------- GeMKR
def test_knowledge_questions_accept_answer_lists_and_clue_strings(tmp_path):
    data = [{"input": "q cap", "output": ["a", "b"], "image": "COCO_val2014_000000297147"},
            {"input": "q cap", "output": "some clue text", "image": "x"}]
    assert formats.read_knowledge_questions(_json(tmp_path, "k.json", data)) == data


@pytest.mark.parametrize("item,message", [
    ({"input": "", "output": ["a"], "image": "x"}, "item 1: expected 'input' to be a non-empty string"),
    ({"input": "q", "output": [], "image": "x"}, "item 1: expected 'output' to be a non-empty list"),
    ({"input": "q", "output": ["a"]}, "item 1: expected key 'image'"),
])
def test_knowledge_questions_reject_bad_items(tmp_path, item, message):
    good = {"input": "q", "output": ["a"], "image": "x"}
    with pytest.raises(DataFormatError, match=message):
        formats.read_knowledge_questions(_json(tmp_path, "k.json", [good, item]))


def test_invalid_json_reports_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n{"input": "q",\n "output": ]\n')
    with pytest.raises(DataFormatError, match=r"broken.json: line 3 column"):
        formats.read_knowledge_questions(path)


# ----------------------------------------------------------------------------- COCO
def _coco():
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 2, "bbox": [1, 1, 3, 3], "area": 9, "iscrowd": 0}],
            "categories": [{"id": 2, "name": "dog", "supercategory": "animal"}]}


def test_coco_instances_and_detections_accept_good_files(tmp_path):
    instances = formats.read_coco_instances(_json(tmp_path, "i.json", _coco()))
    dets = [{"image_id": 1, "category_id": 2, "bbox": [0.5, 1, 3, 3], "score": 0.9}]
    assert formats.read_coco_detections(_json(tmp_path, "d.json", dets), instances) == dets


@pytest.mark.parametrize("mutate,message", [
    (lambda d: d["annotations"][0].update(image_id=9), r"annotations\[0\]: expected 'image_id' to be the id of an image"),
    (lambda d: d["annotations"][0].update(category_id=3), r"annotations\[0\]: expected 'category_id'"),
    (lambda d: d["annotations"][0].update(bbox=[1, 1, -3, 3]), r"annotations\[0\]: expected 'bbox'"),
    (lambda d: d["images"].append(dict(d["images"][0])), r"images\[1\]: expected a unique id; 1 is repeated"),
    (lambda d: d.pop("categories"), "expected a list under 'categories'"),
])
def test_coco_instances_reject_bad_entries(tmp_path, mutate, message):
    data = _coco()
    mutate(data)
    with pytest.raises(DataFormatError, match=message):
        formats.read_coco_instances(_json(tmp_path, "i.json", data))


def test_coco_detections_reject_bad_score_and_unknown_image(tmp_path):
    instances = _coco()
    bad_score = [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 1.5}]
    with pytest.raises(DataFormatError, match="item 0: expected 'score' to be a number in"):
        formats.read_coco_detections(_json(tmp_path, "d.json", bad_score))
    unknown = [{"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 0.5},
               {"image_id": 4, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 0.5}]
    with pytest.raises(DataFormatError, match="item 1: expected an image id of the instances file, got 4"):
        formats.read_coco_detections(_json(tmp_path, "d.json", unknown), instances)


def test_coco_captions_need_a_caption(tmp_path):
    data = {"images": _coco()["images"], "annotations": [{"id": 1, "image_id": 1, "caption": " "}]}
    with pytest.raises(DataFormatError, match=r"annotations\[0\]: expected 'caption'"):
        formats.read_coco_captions(_json(tmp_path, "c.json", data))


# ----------------------------------------------------------------------------- LLaVA
def _turns(*values):
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": v} for i, v in enumerate(values)]


def test_llava_single_multi_and_text_only_records(tmp_path):
    data = [{"id": "a", "image": "x.jpg", "conversations": _turns("<image>\nWhat?", "A cat.", "More?", "No.")},
            {"id": "b", "image": ["r1.jpg", "r2.jpg", "q.jpg"],
             "conversations": _turns("<Retrieval> 1. <image> c1\n2. <image> c2 </Retrieval>\n<image> Q?", "Yes")},
            {"id": 3, "conversations": _turns("Hi", "Hello")}]
    assert formats.read_llava_conversations(_json(tmp_path, "l.json", data)) == data
    assert formats.llava_images(data[1]) == ["r1.jpg", "r2.jpg", "q.jpg"]


@pytest.mark.parametrize("item,message", [
    ({"id": "m", "image": ["a.jpg", "b.jpg"], "conversations": _turns("<image> q", "a")},
     r"item 1 \(id=m\): expected as many '<image>' placeholders as images \(2\), got 1"),
    ({"id": "n", "conversations": _turns("<image> q", "a")}, r"item 1 \(id=n\): expected as many '<image>'"),
    ({"id": "o", "image": "a.jpg", "conversations": [{"from": "gpt", "value": "<image>"}]},
     r"item 1 \(id=o\) turn 0: expected turns alternating human/gpt"),
    ({"id": "p", "image": "a.jpg", "conversations": [{"from": "robot", "value": "<image>"}]},
     r"turn 0: expected 'from' to be 'human' or 'gpt'"),
    ({"image": "a.jpg", "conversations": _turns("<image> q", "a")}, "item 1: expected key 'id'"),
])
def test_llava_rejects_bad_records(tmp_path, item, message):
    good = {"id": "g", "image": "g.jpg", "conversations": _turns("<image>\nq", "a")}
    with pytest.raises(DataFormatError, match=message):
        formats.read_llava_conversations(_json(tmp_path, "l.json", [good, item]))


# ----------------------------------------------------------------------------- POPE, captions, regions
def test_pope_jsonl_reads_and_rejects_bad_line(tmp_path):
    rows = [{"question_id": 1, "image": "a.jpg", "text": "Is there a dog in the image?", "label": "yes"},
            {"question_id": 2, "image": "a.jpg", "text": "Is there a cat in the image?", "label": "no"}]
    path = tmp_path / "p.jsonl"
    formats.write_jsonl(path, rows)
    assert formats.read_pope_jsonl(path) == rows
    path.write_text(path.read_text() + "\n" + json.dumps({**rows[0], "label": "maybe"}) + "\n")
    with pytest.raises(DataFormatError, match="p.jsonl: line 4: expected 'label' to be 'yes' or 'no'"):
        formats.read_pope_jsonl(path)
    path.write_text('{"question_id": 1,\n')
    with pytest.raises(DataFormatError, match="line 1: not valid JSON"):
        formats.read_pope_jsonl(path)


def test_image_captions_and_regions(tmp_path):
    caps = [{"image": "images/a.jpg", "caption": "a dog"}, {"image": "images/b.jpg"}]
    with pytest.raises(DataFormatError, match="item 1: expected key 'caption'"):
        formats.read_image_captions(_json(tmp_path, "c.json", caps))
    vg = [{"id": 1, "regions": [{"region_id": 1, "image_id": 1, "phrase": "a dog", "x": 1, "y": 2, "width": 3, "height": 4}]},
          {"image_id": "w1", "regions": [{"region_id": 2, "phrase": "a cat", "x": 1, "y": 2, "width": 0, "height": 4}]}]
    with pytest.raises(DataFormatError, match="item 1 region 0: expected 'width' to be a positive number"):
        formats.read_region_descriptions(_json(tmp_path, "r.json", vg))
    vg[1]["regions"][0]["width"] = 2
    assert formats.read_region_descriptions(_json(tmp_path, "r.json", vg)) == vg


# ----------------------------------------------------------------------------- images on disk
def test_missing_images_are_reported_with_id_and_path(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    llava = [{"id": "r1", "image": ["images/a.jpg", "images/b.jpg"], "conversations": []},
             {"id": "r2", "image": "images/a.jpg", "conversations": []}]
    missing = formats.find_missing_images("llava", llava, tmp_path)
    assert missing == [formats.MissingImage("r1", str(tmp_path / "images" / "b.jpg"))]
    knowledge = [{"question_id": "q7", "image": "c", "input": "", "output": []}]
    assert formats.find_missing_images("knowledge", knowledge, tmp_path / "images")[0].record_id == "q7"
    coco = {"images": [{"id": 4, "file_name": "a.jpg"}, {"id": 5, "file_name": "z.jpg"}]}
    with pytest.raises(DataFormatError, match=r"1 referenced image\(s\) missing: id=5 path=.*z.jpg"):
        formats.assert_images_exist("coco", coco, tmp_path / "images", source="inst.json")
    with pytest.raises(ValueError, match="unknown dataset kind"):
        formats.find_missing_images("vqa", [], tmp_path)


def test_json_bytes_are_canonical():
    assert formats.json_bytes({"b": 1, "a": [1, 2]}) == b'{"a":[1,2],"b":1}\n'
