"""GeMKR end to end on the tiny world: region features, 2 training steps, constrained retrieval eval."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import eval as eval_entry
import train as train_entry
from mmrag.common.assets import llama_tokenizer_dir
from tests.helpers.knowledge_bm25 import bm25_eval

ROOT = Path(__file__).resolve().parents[2]
CFG = "train_configs/gemkr_tiny_world.yaml"


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gemkr")
    world, index = tmp / "world", tmp / "index"

    def run(*args):
        subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, check=True, capture_output=True)

    run("data_process/make_world.py", "--preset", "tiny", "--out", world, "--quiet")
    run("data_process/make_tiny_backbones.py", "--out", index / "tower")
    run("data_process/build_index.py", "--corpus", world / "corpus.csv", "--tokenizer", llama_tokenizer_dir(),
        "--out", index / "corpus")
    tower = f"model.vision_tower.path={index / 'tower'}"
    data = [f"datasets.gemkr_knowledge.data_path={world}/knowledge/{{split}}.json",
            f"datasets.gemkr_knowledge.image_root={world}/images",
            f"datasets.gemkr_knowledge.index_path={index / 'corpus'}",
            f"datasets.gemkr_knowledge.region_store={index / 'regions'}", tower]
    subprocess.run([sys.executable, "data_process/encode_region.py", "--cfg-path", CFG,
                    "--detections", f"{world}/annotations/detections_{{split}}.json",
                    "--instances", f"{world}/annotations/instances_{{split}}.json", "--image-root", world,
                    "--out", index / "regions", "--options", tower], cwd=ROOT, check=True, capture_output=True)
    return tmp, data


def test_two_steps_then_constrained_eval_writes_metrics(tiny_inputs, monkeypatch):
    tmp, data = tiny_inputs
    monkeypatch.chdir(ROOT)
    small = ["run.max_steps=2", "run.batch_size=4", "run.progress=false", "evaluation.max_samples=4",
             "evaluation.num_beams=3", "evaluation.num_beam_groups=3", "evaluation.num_return_sequences=3"]
    result = train_entry.main(["--cfg-path", CFG, f"run.output_dir={tmp / 'run'}", *data, *small])
    assert result["history"][-1]["step"] == 2 and (tmp / "run" / "final" / "trainable.safetensors").is_file()
    summary = json.loads((tmp / "run" / "retrieval_summary.json").read_text())
    assert summary["n_queries"] == 4 and summary["clues_in_corpus"] == 1.0
    per_query = json.loads((tmp / "run" / "retrieval_per_query.json").read_text())
    assert all(len(q["retrieved"]) <= 10 and q["clues"] for q in per_query)
    assert (tmp / "run" / "recall_at_k.png").stat().st_size > 0
    # eval.py on the saved checkpoint reproduces train.py's evaluation exactly
    again = eval_entry.main(["--cfg-path", CFG, f"run.output_dir={tmp / 'eval'}", f"model.checkpoint={tmp / 'run' / 'final'}",
                             *data, *small])
    assert again["P@5"] == summary["P@5"] and again["R@10"] == summary["R@10"]


def test_bm25_baseline_on_the_same_questions(tiny_inputs, monkeypatch):
    tmp, data = tiny_inputs
    monkeypatch.chdir(ROOT)
    out = eval_entry.main(["--cfg-path", CFG, f"run.output_dir={tmp / 'bm25'}", *data, "evaluation.method=bm25"])
    assert out["n_queries"] == 25 and "clues_in_corpus" not in out
    # every summary figure is the mean of the per-query records, each recomputed here from the
    # corpus text: a passage is relevant when it contains a gold answer; the world's config makes the
    # case-insensitive mode the headline and keeps GeMKR's mode (passage as is) beside it
    corpus = {row["id"]: row["text"] for row in csv.DictReader(open(tmp / "world" / "corpus.csv"))}
    per_query = json.loads((tmp / "bm25" / "retrieval_per_query.json").read_text())
    for q in per_query:
        assert q["relevant"] == [any(a.lower() in corpus[pid].lower() for a in q["answers"]) for pid in q["retrieved"]]
        gemkr = [any(a.lower() in corpus[pid] for a in q["answers"]) for pid in q["retrieved"]]
        assert q["by_case_mode"]["gemkr"]["relevant"] == gemkr
        assert q["scores"] == sorted(q["scores"], reverse=True)
    assert out["case_mode"] == "case_insensitive"
    assert out["P@5"] == pytest.approx(sum(sum(q["relevant"][:5]) / 5 for q in per_query) / 25)
    assert out["R@10"] == pytest.approx(sum(any(q["relevant"][:10]) for q in per_query) / 25)
    gemkr_p5 = sum(sum(q["by_case_mode"]["gemkr"]["relevant"][:5]) / 5 for q in per_query) / 25
    assert out["by_case_mode"]["gemkr"]["P@5"] == pytest.approx(gemkr_p5) and gemkr_p5 <= out["P@5"]


# a corpus without stop words: BM25 (bm25s, Lucene form, k1 1.5, b 0.75) can be worked out by hand
PASSAGES = ["zebra savanna grass", "banana fruit yellow", "zebra zebra herd grass", "lighthouse ship night"]
QUESTIONS = [{"question_id": "q1", "input": "zebra grass", "output": ["herd"], "image": "i1"},
             {"question_id": "q2", "input": "banana", "output": ["yellow"], "image": "i2"},
             {"question_id": "q3", "input": "zebra", "output": ["savanna"], "image": "i3"}]


def test_bm25_on_a_hand_made_corpus(tmp_path, monkeypatch):
    out, per_query = bm25_eval(tmp_path, monkeypatch, PASSAGES, {"test": QUESTIONS},
                               ["evaluation.top_k=2", "evaluation.ks=[1,2]"])
    # q1: p2 (zebra twice, grass) > p0 (zebra, grass; shorter but tf 1); p2 holds "herd"
    # q2: p1 is the only banana passage; q3: p2 (zebra twice) > p0 (zebra once), "savanna" is in p0
    assert [q["retrieved"][0] for q in per_query] == ["p2", "p1", "p2"]
    assert per_query[0]["retrieved"] == ["p2", "p0"] and per_query[2]["retrieved"] == ["p2", "p0"]
    assert out["P@1"] == pytest.approx(2 / 3) and out["R@1"] == pytest.approx(2 / 3)
    assert out["P@2"] == pytest.approx(1 / 2) and out["R@2"] == pytest.approx(1.0)
    assert out["MRR@2"] == pytest.approx((1 + 1 + 1 / 2) / 3)
