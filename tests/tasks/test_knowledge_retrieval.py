"""GeMKR end to end on the tiny world: region features, 2 training steps, constrained retrieval eval."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import eval as eval_entry
import train as train_entry
from mmrag.common.assets import llama_tokenizer_dir

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
    assert len(result["history"]) == 2 and (tmp / "run" / "final" / "trainable.safetensors").is_file()
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
    assert out["n_queries"] == 25 and 0.0 <= out["P@5"] <= 1.0
    assert "clues_in_corpus" not in out
