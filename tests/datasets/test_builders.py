"""The text and alignment builders: records worked out by hand from tiny files."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from omegaconf import OmegaConf

import mmrag  # noqa: F401
from mmrag.common.errors import ConfigError
from mmrag.common.registry import DATASETS

PROCESSOR = SimpleNamespace(image_processor=lambda path: path)


def cfg(builder, **values):
    return OmegaConf.create({**DATASETS.get(builder).default_config({}), **values})


@pytest.fixture
def world(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / "images" / name).write_bytes(b"x")
    images = [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8},
              {"id": 2, "file_name": "b.jpg", "width": 8, "height": 8}]
    (tmp_path / "captions_train.json").write_text(json.dumps({"images": images, "annotations": [
        {"id": 7, "image_id": 1, "caption": "A red tool."}, {"id": 8, "image_id": 2, "caption": "A tree."}]}))
    (tmp_path / "instances_train.json").write_text(json.dumps({"images": images, "annotations": [],
                                                               "categories": [{"id": 1, "name": "tree"}]}))
    (tmp_path / "regions.json").write_text(json.dumps([
        {"image_id": "a", "regions": [{"region_id": 1, "phrase": "a red tool", "x": 0, "y": 0, "width": 2, "height": 2},
                                      {"region_id": 2, "phrase": "a rock", "x": 1, "y": 1, "width": 2, "height": 2}]},
        {"image_id": "c", "regions": [{"region_id": 1, "phrase": "a cup", "x": 0, "y": 0, "width": 2, "height": 2}]}]))
    (tmp_path / "corpus.csv").write_text('id,text\np1,"The troukrux lives in cedar forests."\np2,Rocks are grey.\n')
    return tmp_path


def test_text_corpus_makes_the_whole_text_the_answer(world):
    corpus = DATASETS.get("text_corpus").build(cfg("text_corpus", data_path=str(world / "corpus.csv")), PROCESSOR,
                                               "train", "corpus")
    assert [r["conversations"] for r in corpus.records] == [
        [{"from": "human", "value": ""}, {"from": "gpt", "value": "The troukrux lives in cedar forests."}],
        [{"from": "human", "value": ""}, {"from": "gpt", "value": "Rocks are grey."}]]
    assert all(r["images"] == [] for r in corpus.records)
    captions = DATASETS.get("text_corpus").build(
        cfg("text_corpus", format="coco_captions", data_path=str(world / "captions_{split}.json")), PROCESSOR, "train", "c")
    assert [r["conversations"][1]["value"] for r in captions.records] == ["A red tool.", "A tree."]
    with pytest.raises(ConfigError, match="datasets.x.format"):
        DATASETS.get("text_corpus").build(cfg("text_corpus", format="tsv", data_path=str(world / "corpus.csv")),
                                          PROCESSOR, "train", "x")


def test_coco_captions_ask_for_a_description_of_their_image(world):
    ds = DATASETS.get("coco_captions").build(
        cfg("coco_captions", data_path=str(world / "captions_{split}.json"), image_root=str(world / "images")),
        PROCESSOR, "train", "captions")
    assert [(r["images"], r["conversations"]) for r in ds.records] == [
        ([str(world / "images" / "a.jpg")], [{"from": "human", "value": "<image>\nDescribe the image briefly."},
                                             {"from": "gpt", "value": "A red tool."}]),
        ([str(world / "images" / "b.jpg")], [{"from": "human", "value": "<image>\nDescribe the image briefly."},
                                             {"from": "gpt", "value": "A tree."}])]


def test_region_descriptions_keep_only_the_split_images(world):
    ds = DATASETS.get("region_descriptions").build(
        cfg("region_descriptions", data_path=str(world / "regions.json"), image_root=str(world / "images"),
            split_images=str(world / "instances_{split}.json")), PROCESSOR, "train", "regions")
    # image c is not in the train split; image b has no regions
    assert [(r["id"], r["images"], r["conversations"][1]["value"]) for r in ds.records] == [
        ("a_regions", [str(world / "images" / "a.jpg")], "a red tool; a rock")]
