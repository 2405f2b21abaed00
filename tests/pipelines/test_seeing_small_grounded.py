"""The `small_grounded` setting of the seeing pipeline: one training stage and its eval config hold the
recipe chosen on val in docs/measurements/seeing_small_grounded_2026-11-30/match_bias/README.md
(MBFG10_first_w1_1200). Oracle: the recipe's keys written out by hand from that README and run_variant.py."""
from __future__ import annotations

import mmrag  # noqa: F401
from mmrag.common.cli import REPO_ROOT
from mmrag.common.config import build_config
from mmrag.pipelines import seeing
from tests.helpers.config_keys import flat_keys

GB = "dataset/world_small/annotations/instances_train.json"
W = "dataset/world_small"
# by hand: run_variant.py's SMALL + MIX + COMMON and the README's MBFG10_first_w1_1200 keys
RECIPE = {
    "model.checkpoint": None,
    "model.llm.config.hidden_size": 128, "model.llm.config.intermediate_size": 256,
    "model.llm.config.num_hidden_layers": 2,
    "model.vision_tower.feature_cache": "output/seeing_small/feature_cache",
    "model.grounding_loss_weight": 1.0, "model.grounding_head": "input", "model.match_answer_bias": True,
    "model.match_answer_names": GB, "model.match_answer_gain": 10,
    "run.max_steps": 1200, "run.batch_size": 16, "run.log_every": 50,
    "run.task": "instruction_tuning", "run.init_lr": 2.0e-3, "run.min_lr": 1.0e-4,
    "datasets.objects.builder": "llava_instruct", "datasets.objects.data_path": f"{W}/llava/objects_{{split}}.json",
    "datasets.objects.image_root": W, "datasets.objects.sample_ratio": 0.25, "datasets.objects.grounding_boxes": GB,
    "datasets.listed.builder": "llava_instruct", "datasets.listed.data_path": f"{W}/llava/yesno_listed_{{split}}.json",
    "datasets.listed.image_root": W, "datasets.listed.sample_ratio": 0.4, "datasets.listed.grounding_boxes": GB,
    "datasets.yesno_balanced.data_path": f"{W}/llava/yesno_balanced_{{split}}.json",
    "datasets.yesno_balanced.sample_ratio": 0.15, "datasets.yesno_balanced.grounding_boxes": GB,
    "datasets.llava_instruct.data_path": f"{W}/llava/instruct_{{split}}.json",
    "datasets.llava_instruct.sample_ratio": 0.2,
}


def test_small_grounded_is_one_stage_from_a_random_llm_then_every_image_control():
    stages = seeing.build_stages(seeing.SeeingOptions(out="o", setting="small_grounded"))
    assert [s.name for s in stages] == ["world", "features", "stage2_grounded", "pope_none", "pope_blank", "pope_shuffled",
                                        "pope_text_only"]
    train = stages[2].command
    assert "train_configs/seeing_small_grounded.yaml" in train and "model.checkpoint=null" in train
    for control, stage in zip(seeing.CONTROLS, stages[3:]):
        assert "eval_configs/seeing_small_grounded_pope.yaml" in stage.command
        assert "model.checkpoint=o/stage2_grounded/final" in stage.command
        assert f"evaluation.image_control={control}" in stage.command
    val = seeing.build_stages(seeing.SeeingOptions(out="o", setting="small_grounded", questions="val"))[3].command
    assert "evaluation.question_file=dataset/world_small/pope_val/{split}.jsonl" in val


def test_small_grounded_configs_hold_the_val_chosen_recipe():
    train = flat_keys(build_config(str(REPO_ROOT / "train_configs/seeing_small_grounded.yaml"), []))
    assert {k: train.get(k, "<missing>") for k in RECIPE} == RECIPE
    assert type(train["model.match_answer_gain"]) is int and type(train["run.batch_size"]) is int
    # the recipe's mix and nothing else: stage 1's captions / regions and stage 0's text are dropped
    assert sorted({k.split(".")[1] for k in train if k.startswith("datasets.")}) == [
        "listed", "llava_instruct", "objects", "yesno_balanced"]
    pope_cfg = build_config(str(REPO_ROOT / "eval_configs/seeing_small_grounded_pope.yaml"), [])
    pope = flat_keys(pope_cfg)
    model_keys = {k for k in train if k.startswith("model.") and k != "model.checkpoint"}
    assert {k: pope[k] for k in model_keys} == {k: train[k] for k in model_keys}
    assert pope["run.task"] == "vqa_eval" and pope["evaluation.image_control"] == "none"
    assert pope["evaluation.question_file"] == f"{W}/pope/{{split}}.jsonl"
    assert pope["evaluation.splits"] == ["random", "popular", "adversarial"]
    assert pope["model.checkpoint"] == "output/seeing_small_grounded/stage2_grounded/final"
