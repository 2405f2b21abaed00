"""The knowledge questions' val split: carved from the training questions by image, seeded; worked
out on a hand-built questions file (image -> number of questions known in advance)."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

import mmrag  # noqa: F401
from mmrag.cli.make_knowledge_val import main as make_val_main
from mmrag.common.errors import MissingPathError
from mmrag.common.registry import DATASETS
from mmrag.datasets.knowledge import knowledge_val_images, read_split_questions, write_val_images

# 30 training images; image i has (i % 3) + 1 questions -> 60 questions; 4 test questions on other images
PER_IMAGE = {f"img{i:02d}": i % 3 + 1 for i in range(30)}
TRAIN = [{"question_id": f"{im}_q{j}", "input": f"q {j} on {im}", "output": ["x"], "image": im}
         for im, n in PER_IMAGE.items() for j in range(n)]
TEST = [{"question_id": f"t{i}", "input": f"t {i}", "output": ["y"], "image": f"test{i}"} for i in range(4)]


@pytest.fixture
def questions_dir(tmp_path):
    (tmp_path / "train.json").write_text(json.dumps(TRAIN))
    (tmp_path / "test.json").write_text(json.dumps(TEST))
    return tmp_path


def ds_cfg(folder, val_images=None):
    return OmegaConf.create({**DATASETS.get("gemkr_knowledge").default_config({}),
                             "data_path": f"{folder}/{{split}}.json", "val_images": val_images})


def test_val_images_are_a_seeded_tenth_of_the_training_images():
    val = knowledge_val_images(TRAIN, seed=0)
    assert len(val) == 3 and val == sorted(val) and set(val) <= set(PER_IMAGE)   # round(0.1 * 30) images
    assert knowledge_val_images(list(reversed(TRAIN)), seed=0) == val            # order of the file does not matter
    assert len(knowledge_val_images(TRAIN, seed=0, fraction=0.2)) == 6
    assert len({tuple(knowledge_val_images(TRAIN, seed=s)) for s in range(5)}) > 1   # the seed moves it


def test_write_val_images_counts_questions_by_image(questions_dir):
    report = write_val_images(questions_dir / "train.json", questions_dir / "out" / "val.json", seed=3)
    written = json.loads((questions_dir / "out" / "val.json").read_text())
    val_questions = sum(PER_IMAGE[im] for im in written["images"])
    assert written["images"] == knowledge_val_images(TRAIN, seed=3)
    assert report["val_questions"] == val_questions and report["train_questions"] == 60 - val_questions
    assert report["train_images"] == 27 and written["seed"] == 3 and written["fraction"] == 0.1


def test_splits_are_disjoint_by_image_and_cover_the_training_file(questions_dir):
    write_val_images(questions_dir / "train.json", questions_dir / "val.json", seed=0)
    held = set(json.loads((questions_dir / "val.json").read_text())["images"])
    cfg = ds_cfg(questions_dir, str(questions_dir / "val.json"))
    train, val = read_split_questions(cfg, "train"), read_split_questions(cfg, "val")
    assert {q["image"] for q in val} == held and not held & {q["image"] for q in train}
    assert len(val) == sum(PER_IMAGE[im] for im in held) and len(train) + len(val) == 60
    assert sorted(q["question_id"] for q in train + val) == sorted(q["question_id"] for q in TRAIN)
    assert read_split_questions(cfg, "test") == TEST   # the test split is untouched


def test_without_val_images_the_split_files_are_read_as_they_are(questions_dir):
    cfg = ds_cfg(questions_dir)
    assert read_split_questions(cfg, "train") == TRAIN
    with pytest.raises(MissingPathError):   # no val.json in the world: a val split needs val_images
        read_split_questions(cfg, "val")


def test_a_missing_val_image_list_names_its_config_key(questions_dir):
    with pytest.raises(MissingPathError, match="val_images"):
        read_split_questions(ds_cfg(questions_dir, str(questions_dir / "absent.json")), "train")


def test_the_command_line_writes_the_same_split(questions_dir, capsys):
    out = questions_dir / "cli.json"
    assert make_val_main(["--questions", str(questions_dir / "train.json"), "--out", str(out), "--seed", "2"]) == 0
    assert json.loads(out.read_text())["images"] == knowledge_val_images(TRAIN, seed=2)
    assert json.loads(capsys.readouterr().out)["train_images"] == 27
