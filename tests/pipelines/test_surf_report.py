"""The SURf report's neighbour table end to end on a hand-built world: the RAG rows' database, the
training annotations and the three POPE splits; the cells are the hand-worked shares of
tests/pipelines/test_analysis.py (the same database and questions)."""
from __future__ import annotations

import functools
import json

import numpy as np

from mmrag.pipelines import analysis, surf_report
from mmrag.pipelines.surf import SurfOptions, surf_stages
from mmrag.retrieval.dense_index import DenseIndex, build_database
from mmrag.retrievers.image_database import ImageDatabaseRetriever
from tests.pipelines.test_analysis import CAPTIONS, INSTANCES, QUESTIONS, RAG, TRAIN_VECTORS, ZERO_SHOT, VectorsByStem

NEIGHBOUR_IDS = [["t1", "t2"], ["t1", "t2"], ["t5", "t4"], ["t5", "t4"], ["t4", "t2"], ["t5", "t4"]]


def write_answers(folder, split, predictions, retrieved=None):
    """An answers file of the first six questions (all but question 6 recorded with its neighbours)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"question_id": q["question_id"], "prediction": p, "correct": 0.0,
             "retrieved": [{"id": i} for i in retrieved[n]] if retrieved and n != 5 else []}
            for n, (q, p) in enumerate(zip(QUESTIONS[:6], predictions))]
    (folder / f"answers_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_prints_what_the_neighbours_hold_per_split(tmp_path, monkeypatch):
    world = tmp_path / "dataset" / "world_small"
    (world / "annotations").mkdir(parents=True)
    (world / "annotations" / "instances_train.json").write_text(json.dumps(INSTANCES))
    (world / "pope").mkdir()
    for split in ("random", "popular", "adversarial"):
        rows = QUESTIONS[:6] if split != "popular" else QUESTIONS[:1]   # popular: only the first question
        (world / "pope" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = [{"id": name, "image": f"images/{name}.jpg", "caption": CAPTIONS[name]} for name in TRAIN_VECTORS]
    build_database(tmp_path / "o" / "db", np.asarray(list(TRAIN_VECTORS.values()), dtype=np.float32), items,
                   image_root=world, progress=False)
    retriever = ImageDatabaseRetriever(DenseIndex.load(tmp_path / "o" / "db", VectorsByStem()))
    monkeypatch.setattr(surf_report, "rag_neighbours", functools.partial(analysis.rag_neighbours, retriever=retriever))

    write_answers(tmp_path / "o" / "pope_base_none", "random", ZERO_SHOT)
    write_answers(tmp_path / "o" / "pope_base_rag", "random", RAG, NEIGHBOUR_IDS)
    opt = SurfOptions(base="seeing_large", base_checkpoint="ckpt/final", out="o", pope_max=0)
    text = surf_report.write_report(tmp_path, surf_stages(opt, tmp_path), opt, opt.report_target(tmp_path)).read_text()
    assert "| random, yes | 2 | 100.0 | 75.0 | 70.0 | 40.0 | 100.0 |" in text
    assert "| random, no | 4 | 25.0 | 12.5 | 52.5 | 30.0 | 25.0 |" in text
    assert "| popular, yes | 1 | 100.0 | 100.0 | 70.0 | 40.0 | 100.0 |" in text   # Q1 alone: t1, t2 hold cat
    assert "| popular, no | 0 | - | - | - | - | - |" in text
    # accuracy split by the neighbours (hand-worked in test_analysis): only random has answers
    assert "| random, yes, yes | 2 | 50.0 | 100.0 | +50.0 [" in text
    assert "| random, no, no | 3 | 66.7 | 66.7 | +0.0 [" in text
    assert "| popular, yes, yes |" not in text
    # question 6 recorded with no neighbours: 5 of 6 agree
    assert "Neighbours recomputed here equal (ids, in order) those the vanilla RAG row recorded: random 5 of 6." in text
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["neighbours_recorded"] == {"random": [5, 6]}
    assert report["accuracy_by_neighbours"]["random"]["no"]["holds"]["accuracy"] == {
        "base model, zero-shot": 1.0, "base model + vanilla RAG": 0.0}
    assert report["neighbours"]["adversarial"]["no"]["any_holds"] == 0.25
    assert report["neighbours"]["popular"]["no"] == {"questions": 0, **dict.fromkeys(analysis.NEIGHBOUR_COLUMNS)}


def test_without_a_database_the_section_says_so(tmp_path):
    assert surf_report.neighbour_presence_by_split(tmp_path, 0, "o") == {}
    assert surf_report.neighbour_section({}) == [
        "not run yet (needs the database, the training annotations and the POPE questions)"]
