"""The ScienceQA reader and QCM-LEPA format on a hand-written fixture in the official layout."""
import json

import pytest
from omegaconf import OmegaConf
from PIL import Image

from mmrag.common.errors import UserError
from mmrag.datasets.scienceqa import (
    ScienceQABuilder, answer_text, conversation, human_turn, read_scienceqa,
)

PROBLEMS = {
    "7": {"question": "Which animal is shown?", "choices": ["cat", "dog", "fox"], "answer": 1,
          "hint": "", "image": "image.png", "lecture": "Dogs bark.", "solution": "It barks.", "split": "train"},
    "12": {"question": "What is 2+2?", "choices": ["3", "4"], "answer": 1, "hint": "Count on fingers.",
           "image": None, "lecture": "Addition.", "solution": "2+2=4.", "split": "train"},
    "30": {"question": "Is ice cold?", "choices": ["yes", "no"], "answer": 0, "hint": "", "image": None,
           "lecture": "", "solution": "", "split": "test"},
}


def write_layout(root, problems=PROBLEMS, splits=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "problems.json").write_text(json.dumps(problems))
    (root / "pid_splits.json").write_text(json.dumps(splits or {"train": ["7", "12"], "test": ["30"]}))
    (root / "images" / "train" / "7").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(root / "images" / "train" / "7" / "image.png")
    return root


def test_reader_official_layout(tmp_path):
    root = write_layout(tmp_path / "sqa")
    items = read_scienceqa(root, "train")
    assert [it["id"] for it in items] == ["7", "12"]
    dog, add = items
    assert dog["answer"] == "B" and dog["image"] == str(root / "images/train/7/image.png")
    assert dog["has_image"] and not dog["has_text"]
    assert add["answer"] == "B" and add["image"] is None and add["has_text"]


def test_qcm_lepa_strings(tmp_path):
    dog, add = read_scienceqa(write_layout(tmp_path / "sqa"), "train")
    assert human_turn(dog) == "<image>\nWhich animal is shown?\nContext: N/A\nOptions: (A) cat (B) dog (C) fox"
    assert human_turn(add) == "What is 2+2?\nContext: Count on fingers.\nOptions: (A) 3 (B) 4"
    assert answer_text(dog) == "LECTURE: Dogs bark.\nSOLUTION: It barks.\n###\nANSWER: B."
    assert answer_text(add, "QCM-A") == "ANSWER: B."
    camml = conversation(add, "camml")[0]["value"]
    assert camml.count("<context>") == 1 and camml.index("<context>") < camml.index("What is 2+2?")
    icl = human_turn(add, "text_icl", [dog], "QCM-A")
    assert icl.count("<image>") == 1 and "ANSWER: B." in icl and icl.endswith("Options: (A) 3 (B) 4")


@pytest.mark.parametrize("change, needle", [
    ({"choices": []}, "problem 12: expected 'choices'"),
    ({"answer": 2}, "problem 12: 'answer' must be an index"),
    ({"answer": -1}, "problem 12: 'answer' must be an index"),
])
def test_bad_problem_one_line_error(tmp_path, change, needle):
    problems = json.loads(json.dumps(PROBLEMS))
    problems["12"].update(change)
    root = write_layout(tmp_path / "bad", problems)
    with pytest.raises(UserError) as err:
        read_scienceqa(root, "train")
    msg = str(err.value)
    assert needle in msg and "problems.json" in msg and "\n" not in msg


def test_missing_pid_and_split(tmp_path):
    root = write_layout(tmp_path / "sqa", splits={"train": ["7", "99"]})
    with pytest.raises(UserError, match="pid 99"):
        read_scienceqa(root, "train")
    with pytest.raises(UserError, match="split 'val'"):
        read_scienceqa(root, "val")


class _Proc:
    class image_processor:  # noqa: N801 - a stand-in with the two members the dataset uses
        image_size = 4

        def __new__(cls, path):
            import torch
            return torch.ones(3, 4, 4)


def _cfg(**kw):
    base = ScienceQABuilder.default_config({})
    base.update(kw)
    return OmegaConf.create(base)


def test_builder_camml_context_and_checks(tmp_path):
    root = write_layout(tmp_path / "sqa")
    nb = tmp_path / "nb_{split}.json"
    (tmp_path / "nb_test.json").write_text(json.dumps({"neighbours": {"30": ["12", "7"]}}))
    ds = ScienceQABuilder.build(_cfg(data_path=str(root), context="camml", neighbours=str(nb), icl_num=2),
                                _Proc, "test", "sqa")
    sample = ds[0]
    ctx = sample["context"]
    assert ctx["pixel_values"].shape == (2, 3, 4, 4)
    assert float(ctx["pixel_values"][0].abs().sum()) == 0.0      # "12" has no image: the zero tensor
    assert float(ctx["pixel_values"][1].sum()) == 48.0            # "7" has one
    assert ctx["texts"][0].startswith("What is 2+2?") and ctx["texts"][0].endswith("ANSWER: B.")
    with pytest.raises(UserError, match="fewer than icl_num=3"):
        ScienceQABuilder.build(_cfg(data_path=str(root), context="camml", neighbours=str(nb), icl_num=3),
                               _Proc, "test", "sqa")
    (tmp_path / "nb_train.json").write_text(json.dumps({"neighbours": {"7": ["7"], "12": ["7"]}}))
    with pytest.raises(UserError, match="problem 7 retrieves itself"):
        ScienceQABuilder.build(_cfg(data_path=str(root), context="camml", neighbours=str(nb), icl_num=1),
                               _Proc, "train", "sqa")


def test_builder_text_icl_images_in_prompt_order(tmp_path):
    root = write_layout(tmp_path / "sqa")
    (tmp_path / "nb_test.json").write_text(json.dumps({"neighbours": {"30": ["7", "12"]}}))
    ds = ScienceQABuilder.build(_cfg(data_path=str(root), context="text_icl", neighbours=str(tmp_path / "nb_{split}.json"),
                                     icl_num=2, prompt_format="QCM-A"), _Proc, "test", "sqa")
    rec = ds.records[0]
    assert rec["images"] == [str(root / "images/train/7/image.png")]
    assert rec["conversations"][0]["value"].count("<image>") == 1
