"""llava_instruct's grounding_boxes: every image's per-cell name targets, worked out by hand."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

import mmrag  # noqa: F401
from mmrag.common.errors import ConfigError, DataFormatError
from mmrag.common.registry import DATASETS
from mmrag.processors.tokenization import IGNORE_INDEX as IGN


@pytest.fixture(scope="module")
def tokenizer():
    from mmrag.processors.tokenizers import load_tokenizer

    return load_tokenizer(OmegaConf.create({"path": None, "tokenizer_path": None, "config": {"hidden_size": 8}}))


class _Images:
    """Stands in for the image processor: no decoding, square padding on."""

    pad_to_square = True

    def __call__(self, path):
        return torch.zeros(3, 2, 2)


def _processor(tokenizer, cells=4):
    return SimpleNamespace(num_visual_tokens=cells, tokenizer=tokenizer, image_processor=_Images())


@pytest.fixture
def world(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / "images" / name).write_bytes(b"x")
    instances = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
                 "categories": [{"id": 1, "name": "tree"}, {"id": 2, "name": "drugraix"}],
                 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50]},
                                 {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 50, 50]}]}
    (tmp_path / "instances_train.json").write_text(json.dumps(instances))
    turns = [{"from": "human", "value": "<image>\nIs there a tree in the image?"}, {"from": "gpt", "value": "Yes."}]
    (tmp_path / "q_train.json").write_text(json.dumps([{"id": "q1", "image": "images/a.jpg", "conversations": turns}]))
    (tmp_path / "bad_train.json").write_text(json.dumps([{"id": "q2", "image": "images/b.jpg", "conversations": turns}]))
    return tmp_path


def _cfg(world, data="q_{split}.json", **keys):
    defaults = DATASETS.get("llava_instruct").default_config({})
    return OmegaConf.create({**defaults, "data_path": str(world / data), "image_root": str(world),
                             "grounding_boxes": str(world / "instances_{split}.json"), **keys})


def test_each_image_gets_its_boxes_names_on_its_cells(world, tokenizer):
    # a 2 x 2 grid of 50-px cells: the tree fills cell 0, the drugraix cell 3
    ds = DATASETS.get("llava_instruct").build(_cfg(world, grounding_tokens="all"), _processor(tokenizer), "train", "q")
    (targets,) = ds[0]["cell_targets"]
    ids = tokenizer.convert_tokens_to_ids
    assert targets.tolist() == [[ids("▁tree"), IGN, IGN], [IGN] * 3, [IGN] * 3, [ids("▁drug"), ids("ra"), ids("ix")]]
    first = DATASETS.get("llava_instruct").build(_cfg(world), _processor(tokenizer), "train", "q")[0]["cell_targets"][0]
    assert first.tolist() == [[ids("▁tree")], [IGN], [IGN], [ids("▁drug")]]
    empty = DATASETS.get("llava_instruct").build(_cfg(world, grounding_empty="nothing"), _processor(tokenizer),
                                                 "train", "q")[0]["cell_targets"][0]
    assert empty[1].tolist() == empty[2].tolist() == tokenizer("nothing", add_special_tokens=False)["input_ids"][:1]


def test_without_grounding_boxes_no_targets_and_bad_inputs_are_refused(world, tokenizer):
    plain = DATASETS.get("llava_instruct").build(_cfg(world, grounding_boxes=None), _processor(tokenizer), "train", "q")
    assert "cell_targets" not in plain[0]
    with pytest.raises(DataFormatError, match="no image b.jpg \\(record q2\\)"):
        DATASETS.get("llava_instruct").build(_cfg(world, data="bad_{split}.json"), _processor(tokenizer), "train", "q")
    with pytest.raises(ConfigError, match="datasets.q.grounding_boxes: the model's 3 visual tokens"):
        DATASETS.get("llava_instruct").build(_cfg(world), _processor(tokenizer, cells=3), "train", "q")
    with pytest.raises(ConfigError, match="grounding_tokens='last'"):
        DATASETS.get("llava_instruct").build(_cfg(world, grounding_tokens="last"), _processor(tokenizer), "train", "q")
