"""The SURf pipeline's bookkeeping: the order of its stages, the leakage guard of the database
captions, a forced construction dropping only the model-dependent stages, the kept report notes."""
from __future__ import annotations

import json

import pytest

from mmrag.pipelines import surf, surf_report
from mmrag.pipelines.stages import remove_stale


def names():
    return [s.name for s in surf.surf_stages(surf.SurfOptions())]


def test_stage_order():
    order = names()
    assert order.index("yesno_data") < order.index("base_train") < order.index("surf_data") < order.index("surf_train")
    assert order.index("db_captions") < order.index("db") < order.index("pope_base_rag")
    evals = [s for s in surf.surf_stages(surf.SurfOptions(pope_max=7)) if s.name.startswith("pope_")]
    assert all(s.outputs[0].endswith("/results.json") and "evaluation.max_samples=7" in s.command for s in evals)
    assert not any("evaluation.kind" in w for s in evals for w in s.command)


def make_world(root, train_images, test_images, pope_images):
    world = root / surf.WORLD
    (world / "llava").mkdir(parents=True)
    (world / "pope").mkdir()
    convo = lambda img: {"id": img, "image": img, "conversations": []}  # noqa: E731
    (world / "llava/instruct_train.json").write_text(json.dumps([convo(i) for i in train_images]))
    (world / "llava/instruct_test.json").write_text(json.dumps([convo(i) for i in test_images]))
    (world / "pope/random.jsonl").write_text("".join(json.dumps({"image": i}) + "\n" for i in pope_images))
    every = sorted({*train_images, *test_images, "images/c.jpg"})
    (world / "image_captions.json").write_text(json.dumps([{"image": i, "caption": i} for i in every]))
    return world


def test_database_holds_only_training_captions(tmp_path):
    world = make_world(tmp_path, ["images/a.jpg", "images/b.jpg"], ["images/t.jpg"], ["t.jpg"])
    assert [p["image"] for p in surf.training_captions(world)] == ["images/a.jpg", "images/b.jpg"]


def test_a_test_image_in_training_is_refused(tmp_path):
    world = make_world(tmp_path, ["images/a.jpg", "images/p.jpg"], ["images/t.jpg"], ["p.jpg"])
    with pytest.raises(surf.LeakageError, match="images/p.jpg"):
        surf.training_captions(world)


def test_forced_construction_keeps_only_model_independent_stages(tmp_path):
    work = tmp_path / surf.OUT / "surf_data"
    work.mkdir(parents=True)
    files = ["single_turn.jsonl", "retrieved.part0of1.jsonl", "retrieved.part0of1.jsonl.done", "initial.part0of1.jsonl",
             "initial.part0of1.jsonl.done", "reanswer.part0of1.jsonl", "evaluated.part0of1.jsonl", "grouped.jsonl",
             "surf_train.json", "llava_subset.json"]
    for name in files:
        (work / name).write_text("x")
    stage = next(s for s in surf.surf_stages(surf.SurfOptions()) if s.name == "surf_data")
    remove_stale(stage, tmp_path)
    assert sorted(p.name for p in work.iterdir()) == ["llava_subset.json", "retrieved.part0of1.jsonl",
                                                      "retrieved.part0of1.jsonl.done", "single_turn.jsonl"]


def test_report_keeps_the_hand_written_notes(tmp_path):
    target = tmp_path / "RESULTS.md"
    assert surf_report.kept_notes(target) == [surf_report.NOTES_MARKER]
    target.write_text("old tables\n" + surf_report.OLD_MARKERS[0] + "\n\n- my reading\n")
    assert surf_report.kept_notes(target) == [surf_report.NOTES_MARKER + "\n\n- my reading"]


def test_vqa_accuracy_by_family():
    rows = [{"prompt": "<image>\nHow many cats?", "correct": True}, {"prompt": "ctx\n<image>\nHow many dogs?", "correct": False},
            {"question": "What colour is it?", "correct": True}]
    assert surf_report.vqa_accuracies(rows) == {"all": (2 / 3, 3), "How many": (0.5, 2), "What colour": (1.0, 1)}
