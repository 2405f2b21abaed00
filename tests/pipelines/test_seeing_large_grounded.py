"""The `large_grounded` setting of the seeing pipeline: its configs hold the variant run as `seeing_matchbias`
in docs/measurements/h200x2_lease_2026-11-30e/ (chosen on val by the rule in gpu/seeing_final.sh). Oracle:
the keys of that run's training command (its report's `smollm2` stage), written out by hand."""
from __future__ import annotations

import mmrag  # noqa: F401
from mmrag.common.cli import REPO_ROOT
from mmrag.common.config import build_config
from mmrag.pipelines import seeing
from tests.helpers.config_keys import flat_keys

GB = "dataset/world_small/annotations/instances_train.json"
# by hand, from the lease's command: the large recipe's own keys plus these
RECIPE = {
    "model.llm.path": "assets/smollm2-135m-instruct", "model.lora.enabled": True, "model.lora.r": 16,
    "model.conversation_template": "chatml", "model.vision_tower.image_size": 224,
    "model.grounding_loss_weight": 1.0, "model.grounding_head": "input", "model.match_answer_bias": True,
    "model.match_answer_names": GB, "model.match_answer_gain": 10,
    "datasets.objects.grounding_boxes": GB, "datasets.listed.grounding_boxes": GB,
    "datasets.yesno_balanced.grounding_boxes": GB,
    "run.max_steps": 2500, "run.batch_size": 32, "run.init_lr": 1.0e-3, "run.amp": "bf16",
}


def _config(path):
    return flat_keys(build_config(str(REPO_ROOT / path), []))


def test_large_grounded_is_one_stage_then_every_image_control():
    stages = seeing.build_stages(seeing.SeeingOptions(out="o", setting="large_grounded"))
    assert [s.name for s in stages] == ["world", "features", "smollm2", "pope_none", "pope_blank", "pope_shuffled",
                                        "pope_text_only"]
    assert "train_configs/seeing_large_grounded.yaml" in stages[2].command
    for control, stage in zip(seeing.CONTROLS, stages[3:]):
        assert "eval_configs/seeing_large_grounded_pope.yaml" in stage.command
        assert "model.checkpoint=o/smollm2/final" in stage.command
        assert f"evaluation.image_control={control}" in stage.command


def test_large_grounded_configs_hold_the_val_chosen_variant():
    train = _config("train_configs/seeing_large_grounded.yaml")
    assert {k: train.get(k, "<missing>") for k in RECIPE} == RECIPE
    # only the variant's keys differ from the plain large recipe (and where outputs go)
    plain = _config("train_configs/seeing_large_smollm2.yaml")
    changed = sorted(k for k in set(train) | set(plain) if train.get(k, "<missing>") != plain.get(k, "<missing>"))
    assert changed == sorted([
        "model.vision_tower.image_size", "model.vision_tower.feature_cache", "model.grounding_loss_weight",
        "model.grounding_head", "model.match_answer_bias", "model.match_answer_names", "model.match_answer_gain",
        "datasets.objects.grounding_boxes", "datasets.listed.grounding_boxes",
        "datasets.yesno_balanced.grounding_boxes", "run.output_dir"])


def test_large_grounded_eval_config_is_the_large_pope_eval_on_this_model():
    train = _config("train_configs/seeing_large_grounded.yaml")
    pope = _config("eval_configs/seeing_large_grounded_pope.yaml")
    model_keys = {k for k in train if k.startswith("model.") and k != "model.checkpoint"}
    assert {k: pope[k] for k in model_keys} == {k: train[k] for k in model_keys}
    assert pope["model.checkpoint"] == "output/seeing_large_grounded/smollm2/final"
    plain = _config("eval_configs/seeing_large_pope.yaml")
    evaluation = {k for k in plain if k.startswith("evaluation.")}
    assert {k: pope[k] for k in evaluation} == {k: plain[k] for k in evaluation}
    assert pope["run.task"] == "vqa_eval"
