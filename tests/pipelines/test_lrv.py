"""The LRV pipeline: stage wiring (both models start from the same weights, every evaluation reads the
right model) and a 2-step base + LRV-tuned training with every evaluation on a tiny world."""
from __future__ import annotations

import json
import shutil

import mmrag  # noqa: F401  (registers tasks, builders, scorers)
from mmrag.pipelines import lrv


def test_stages_start_both_models_from_init_and_evaluate_each():
    opt = lrv.LrvOptions(out="o", init="w/final", overrides=["run.seed=3"])
    stages = {s.name: s.command_line() for s in lrv.build_stages(opt)}
    assert list(stages)[:3] == ["data", "train_base", "train_tuned"]
    assert "lrv_small_base.yaml" in stages["train_base"] and "lrv_small_tuned.yaml" in stages["train_tuned"]
    for model in lrv.MODELS:
        assert "model.checkpoint=w/final" in stages[f"train_{model}"] and f"run.output_dir=o/{model}" in stages[f"train_{model}"]
        for name in [f"lrv_{model}_none", f"lrv_{model}_text_only", f"mme_{model}",
                     *(f"pope_{model}_{c}" for c in lrv.CONTROLS)]:
            assert f"model.checkpoint=o/{model}/final" in stages[name] and "run.seed=3" in stages[name]
    assert "evaluation.image_control=text_only" in stages["lrv_tuned_text_only"]
    assert "evaluation.max_samples=1200" in stages["lrv_base_none"]


def test_two_step_training_and_evaluation_on_a_tiny_world(tmp_path):
    from mmrag.common.cli import REPO_ROOT
    from mmrag.datasets.world.generator import generate_world

    world = tmp_path / "world"
    generate_world("tiny", 0, world, progress=False)
    shutil.rmtree(world / "lrv", ignore_errors=True)  # the generator writes it too; the data stage must here
    w = str(world)
    common = ["model.vision_tower.path=null", "model.vision_tower.image_size=64",
              f"model.vision_tower.feature_cache={tmp_path}/cache", "model.llm.config.hidden_size=32",
              "model.llm.config.intermediate_size=64", "model.llm.config.num_hidden_layers=1",
              "model.llm.config.num_attention_heads=2", "model.llm.config.num_key_value_heads=2"]
    train = ["run.max_steps=2", "run.batch_size=4", "run.warmup_steps=0",
             f"datasets.llava_instruct.data_path={w}/llava/instruct_{{split}}.json", f"datasets.llava_instruct.image_root={w}",
             f"datasets.yesno_balanced.data_path={w}/llava/yesno_balanced_{{split}}.json",
             f"datasets.yesno_balanced.image_root={w}",
             f"datasets.lrv_positive.data_path={w}/lrv/llava_positive_{{split}}.json", f"datasets.lrv_positive.image_root={w}"]
    negative = [f"datasets.lrv_negative.data_path={w}/lrv/llava_negative_{{split}}.json",
                f"datasets.lrv_negative.image_root={w}"]
    stage = {"train_base": train, "train_tuned": [*train, *negative],
             "lrv_base_none": [f"evaluation.question_file={w}/lrv/items_{{split}}.jsonl", f"evaluation.image_root={w}/images",
                               "evaluation.max_new_tokens=6"],
             "mme_base": [f"evaluation.question_file={w}/lrv/mme_{{split}}.jsonl", f"evaluation.image_root={w}/lrv/mme"]}
    for kind in ("lrv", "mme"):
        stage[f"{kind}_tuned" + ("_none" if kind == "lrv" else "")] = stage[f"{kind}_base" + ("_none" if kind == "lrv" else "")]
    for model in lrv.MODELS:
        stage[f"pope_{model}_none"] = [
            f"evaluation.question_file={w}/pope/{{split}}.jsonl", f"evaluation.image_root={w}/images"]
    opt = lrv.LrvOptions(out=str(tmp_path / "run"), world=w, init=None, overrides=common, stage_overrides=stage,
                         lrv_max=24, pope_max=8, mme_max=16, lrv_controls=("none",), pope_controls=("none",),
                         in_process=True)
    result = lrv.run_lrv(opt, root=REPO_ROOT)
    m = result["results"]["lrv_tuned_none"]["test"]
    assert m["num"] == 24 and m["num_negative"] > 0 and m["num_positive"] > 0
    assert set(result["results"]["mme_base"]["test"]["subtasks"]) <= {"existence", "count", "position", "color"}
    assert result["results"]["mme_base"]["test"]["num"] == 16
    diffs = result["differences"]
    assert diffs["false-premise rejection (negatives)"]["n"] == m["num_negative"]
    assert diffs["positive accuracy (positives)"]["n"] == m["num_positive"]
    assert "| tuned | none |" in result["table"] and (tmp_path / "run" / "report.md").is_file()
    log = [json.loads(line)["stage"] for line in (tmp_path / "run" / "stages.jsonl").read_text().splitlines()]
    assert log == [s.name for s in lrv.build_stages(opt)]
