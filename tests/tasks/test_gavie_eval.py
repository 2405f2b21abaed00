"""GAVIE as vqa_eval's scorer: a tiny random model answers the tiny world's GAVIE items through eval.py,
the oracle judge grades them, and the answers file holds what an LLM judge would grade next."""
from __future__ import annotations

import json

import eval as eval_entry
from mmrag.datasets.world.generator import generate_world
from mmrag.datasets.world.gavie import write_gavie
from mmrag.datasets.world.lrv_instructions import write_lrv_instructions
from mmrag.metrics.gavie import OracleJudge


def test_gavie_scorer_through_eval_py_on_a_tiny_world(tmp_path):
    world = tmp_path / "world"
    generate_world("tiny", 0, world, progress=False)
    write_lrv_instructions(world, 0)
    write_gavie(world, 0)
    out = tmp_path / "eval"
    eval_entry.main(["--cfg-path", "eval_configs/gavie_small_vqa_eval.yaml", "model.checkpoint=null",
                     f"run.output_dir={out}", f"evaluation.question_file={world}/gavie/items_{{split}}.jsonl",
                     f"evaluation.image_root={world}/images", "evaluation.max_samples=6", "evaluation.max_new_tokens=4",
                     "model.vision_tower.path=null", "model.vision_tower.image_size=64",
                     f"model.vision_tower.feature_cache={tmp_path}/cache", "model.llm.config.hidden_size=32",
                     "model.llm.config.intermediate_size=64", "model.llm.config.num_hidden_layers=1",
                     "model.llm.config.num_attention_heads=2", "model.llm.config.num_key_value_heads=2"])
    metrics = json.loads((out / "results.json").read_text())["val"]
    rows = [json.loads(line) for line in (out / "answers_val.jsonl").read_text().splitlines()]
    assert metrics["judge"] == "oracle" and metrics["num"] == len(rows) == 6
    # the per-item scores are the oracle's accuracy of each written prediction, recomputed here
    items = {json.loads(l)["question_id"]: json.loads(l) for l in (world / "gavie" / "items_val.jsonl").read_text().splitlines()}
    again = OracleJudge().judge([items[r["question_id"]] for r in rows], [[r["prediction"]] for r in rows])
    assert [r["correct"] for r in rows] == [g[0].accuracy for g in again]
    graded = [g[0].relevancy for g in again]
    assert metrics["relevancy"]["mean"] == sum(graded) / len(graded)
