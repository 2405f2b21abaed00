"""The GeMKR seeing table end to end on tiny stand-ins (tests/helpers/tiny_gemkr_seeing.py): the real
configs, a random LLaMA with its own byte-level BPE tokenizer in SmolLM2's place, a random open_clip
ViT in the world CLIP's place, the tiny world; 2 training steps, 6 questions. Wiring, not quality."""
import json

import numpy as np
import pytest

from mmrag.pipelines import gemkr_seeing as gs
from tests.helpers.tiny_gemkr_seeing import SMOKE_OVERRIDES, make_standins

LABELS = ["GeMKR (constrained)", "GeMKR, no constraint", "GeMKR, no region features", "GeMKR, no prefix",
          "BM25 (question + caption)", "Dense dual encoder"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    import os

    root = make_standins(tmp_path_factory.mktemp("gemkr_seeing"))
    cwd = os.getcwd()
    os.chdir(root)  # in-process stages resolve the configs' relative paths from here, like a subprocess would
    try:
        opt = gs.GemkrSeeingOptions(out="run", overrides=SMOKE_OVERRIDES, in_process=True, region_workers=0)
        report = gs.run_gemkr_seeing(opt, root=root)
        again = gs.run_gemkr_seeing(opt, root=root)
    finally:
        os.chdir(cwd)
    return root, opt, report, again


def test_every_stage_runs_once_in_order_and_a_rerun_runs_nothing(finished):
    root, opt, report, again = finished
    log = [json.loads(line)["stage"] for line in (root / "run/stages.jsonl").read_text().splitlines()]
    # the world CLIP's folder was there (carried): its training stage is skipped
    assert log == ["clip_tower", "corpus_index", "regions", "train_gemkr", "train_gemkr_noregion",
                   "train_gemkr_noprefix", "eval_gemkr", "eval_gemkr_no_constraint", "eval_gemkr_no_region_features",
                   "eval_gemkr_no_prefix", "eval_bm25", "eval_dense_dual_encoder"]
    assert again["summaries"] == report["summaries"]


def test_the_corpus_index_and_clue_targets_use_the_llms_own_tokenizer(finished):
    from transformers import AutoTokenizer

    from mmrag.datasets.clue_sampler import word_start_table
    from mmrag.datasets.formats import read_corpus_csv
    from mmrag.retrieval.sharded_index import load_index

    root = finished[0]
    tok = AutoTokenizer.from_pretrained(str(root / "assets/smollm2-135m-instruct"))
    index = load_index(root / "index/world_small/corpus_smollm2", tokenizer=tok)
    pid, text = read_corpus_csv(root / "dataset/world_small/corpus.csv")[0]
    assert index.passage_id(0) == pid
    assert index.passage_tokens(0).tolist() == tok(text, add_special_tokens=False)["input_ids"]
    # byte-level BPE marks word starts with 'Ġ': the clue sampler must find them (else no clue, no data)
    starts = word_start_table(tok)
    the, t = tok.convert_tokens_to_ids("Ġthe"), tok.convert_tokens_to_ids("t")  # ' the' and a bare letter
    assert tok.tokenize(" the") == ["Ġthe"] and tok.tokenize("t") == ["t"]
    assert starts[the] and not starts[t]


def test_the_tower_and_regions_come_from_the_converted_world_clip(finished):
    root = finished[0]
    config = json.loads((root / "index/world_small/clip_world_hf/config.json").read_text())
    assert (config["hidden_size"], config["num_hidden_layers"], config["image_size"]) == (32, 2, 32)
    index = json.loads((root / "index/world_small/regions_clip_world/index.json").read_text())
    assert sum(len(v) for v in index["shards"].values()) == len(list((root / "dataset/world_small/images").glob("*.jpg")))


def test_the_ablations_train_without_regions_and_the_full_model_with_them(finished):
    import yaml

    root = finished[0]
    saved = {run: yaml.safe_load(next((root / "run" / run).glob("**/config.yaml")).read_text())
             for run in ("gemkr", "gemkr_noregion", "gemkr_noprefix")}
    assert saved["gemkr"]["datasets"]["gemkr_knowledge"]["region_store"] == "index/world_small/regions_clip_world"
    assert saved["gemkr_noregion"]["datasets"]["gemkr_knowledge"]["region_store"] is None
    assert saved["gemkr_noprefix"]["model"]["region_prefix"]["enabled"] is False
    assert {s["model"]["llm"]["path"] for s in saved.values()} == {"assets/smollm2-135m-instruct"}
    assert {s["model"]["lora"]["enabled"] for s in saved.values()} == {True}


def test_report_has_every_row_on_the_same_questions_and_differences_from_the_per_query_files(finished):
    root, _, report, _ = finished
    assert list(report["summaries"]) == LABELS and report["questions"] == [6]
    diffs = report["differences"]["by_case_mode"]["case_insensitive"]
    assert list(diffs) == LABELS[1:]
    per_query = {}
    for label, folder in zip(LABELS, ["gemkr", "gemkr_no_constraint", "gemkr_no_region_features", "gemkr_no_prefix",
                                      "bm25", "dense_dual_encoder"]):
        per_query[label] = {r["query_id"]: r for r in json.loads((root / "run/eval" / folder /
                                                                  "retrieval_per_query.json").read_text())}
    ref = per_query[LABELS[0]]
    for label in LABELS[1:]:
        for metric in ("P@5", "R@5"):
            by_hand = np.mean([ref[q][metric] - per_query[label][q][metric] for q in ref])
            assert diffs[label][metric]["diff"] == pytest.approx(by_hand)
    text = (root / "run/report.md").read_text()
    assert "| Dense dual encoder |" in text and "95% paired bootstrap" in text and "| train_gemkr |" in text
