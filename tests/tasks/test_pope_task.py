"""The pope task: answers a hand-made POPE file, writes the report, and its numbers are
pope_metrics of the answers it wrote; RAG mode puts retrieved images first and never the query."""
from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf
from PIL import Image

import mmrag  # noqa: F401
from mmrag.common.registry import TASKS
from mmrag.metrics.pope import pope_metrics
from mmrag.retrieval.clip_embedder import ClipEmbedder
from mmrag.retrieval.dense_index import build_database
from mmrag.surf.tool_eval import is_correct
from mmrag.tasks.pope import PopeTask, PopeTaskError

QUESTIONS = [
    {"question_id": 1, "image": "a.png", "text": "Is there a cat in the image?", "label": "yes"},
    {"question_id": 2, "image": "a.png", "text": "Is there a dog in the image?", "label": "no"},
    {"question_id": 3, "image": "b.png", "text": "Is there a car in the image?", "label": "yes"},
    {"question_id": 4, "image": "b.png", "text": "Is there a tree in the image?", "label": "no"},
]


@pytest.fixture(scope="module")
def model(tiny_model):
    return tiny_model


@pytest.fixture
def world(tmp_path):
    (tmp_path / "images").mkdir()
    for name, colour in {"a.png": (250, 10, 10), "b.png": (10, 250, 10), "c.png": (200, 40, 40), "d.png": (10, 10, 250)}.items():
        Image.new("RGB", (32, 32), colour).save(tmp_path / "images" / name)
    (tmp_path / "pope").mkdir()
    (tmp_path / "pope" / "random.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return tmp_path


def eval_cfg(world, **evaluation):
    defaults = OmegaConf.create(PopeTask.DEFAULTS["evaluation"])
    ev = OmegaConf.merge(defaults, {"pope_file": str(world / "pope" / "{split}.jsonl"), "image_root": str(world / "images"),
                                    "splits": ["random"], "batch_size": 3, "max_new_tokens": 4}, evaluation)
    return OmegaConf.create({"evaluation": ev})


def test_pope_writes_report_and_scores_the_answers_it_wrote(model, world):
    cfg = eval_cfg(world)
    task = TASKS.get("pope")(cfg)
    metrics = task.evaluate(model, cfg, world / "out")
    rows = [json.loads(line) for line in (world / "out" / "pope_answers_random.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in rows] == [1, 2, 3, 4]
    assert all(r["prompt"].startswith("<image>\n") and "<Retrieval>" not in r["prompt"] for r in rows)
    expected = pope_metrics([r["text"] for r in rows], [q["label"] for q in QUESTIONS])
    assert metrics == {"random": expected}
    assert json.loads((world / "out" / "pope_results.json").read_text()) == {"random": expected}
    assert (world / "out" / "pope_results.png").stat().st_size > 1000


def test_rag_mode_retrieves_other_images_first(model, world):
    embedder = ClipEmbedder({"num_workers": 0, "device": "cpu"})
    names = ["a.png", "b.png", "c.png", "d.png"]
    vectors = embedder.encode_images([world / "images" / n for n in names])
    items = [{"id": n[0], "image": f"images/{n}", "caption": f"picture {n[0]}"} for n in names]
    build_database(world / "db", vectors, items, embedder_cfg=embedder.cfg, image_root=world, progress=False)
    cfg = eval_cfg(world, max_samples=2, retrieval={"mode": "rag", "database": str(world / "db"), "k": 2})
    metrics = PopeTask(cfg).evaluate(model, cfg, world / "out")
    rows = [json.loads(line) for line in (world / "out" / "pope_answers_random.jsonl").read_text().splitlines()]
    assert metrics["random"]["num"] == 2
    for row in rows:  # the query image (a) is in the database but never retrieved for itself
        assert len(row["retrieved"]) == 2 and "a" not in [r["id"] for r in row["retrieved"]]
        assert row["prompt"].startswith("<Retrieval> 1. <image> picture ")
        assert row["prompt"].endswith("</Retrieval>\n<image> " + QUESTIONS[row["question_id"] - 1]["text"])


def test_bad_mode_and_bad_file_are_named(model, world):
    cfg = eval_cfg(world, retrieval={"mode": "bm25"})
    with pytest.raises(PopeTaskError, match="evaluation.retrieval.mode"):
        PopeTask(cfg).evaluate(model, cfg, world / "out")
    (world / "pope" / "random.jsonl").write_text(json.dumps({"question_id": 1, "image": "a.png", "text": "?"}) + "\n")
    with pytest.raises(PopeTaskError, match="random.jsonl: line 1"):
        PopeTask(eval_cfg(world)).evaluate(model, eval_cfg(world), world / "out")


def test_vqa_kind_scores_short_answers_of_matching_records(model, world):
    llava = [
        {"id": "s1_vqa", "image": "images/a.png", "conversations": [
            {"from": "human", "value": "<image>\nHow many objects? Answer with a single word."}, {"from": "gpt", "value": "two"},
            {"from": "human", "value": "Is there a cat? Answer yes or no."}, {"from": "gpt", "value": "yes"}]},
        {"id": "s1_caption", "image": "images/a.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe it."}, {"from": "gpt", "value": "A red square on a plain background."}]},
    ]
    (world / "llava.json").write_text(json.dumps(llava))
    cfg = eval_cfg(world, kind="vqa", vqa_file=str(world / "llava.json"), vqa_image_root=str(world))
    metrics = PopeTask(cfg).evaluate(model, cfg, world / "out")
    rows = [json.loads(line) for line in (world / "out" / "vqa_answers.jsonl").read_text().splitlines()]
    assert [r["qid"] for r in rows] == ["s1_vqa#0", "s1_vqa#1"]  # the caption record is not a VQA item
    assert [r["correct"] for r in rows] == [is_correct(r["prediction"], r["answer"], "short") for r in rows]
    assert metrics["num"] == 2 and metrics["accuracy"] == sum(r["correct"] for r in rows) / 2
    assert set(metrics["by_family"]) == {"How many", "Is there"}
