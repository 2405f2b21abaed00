"""The real-setting DataEngine configs (MiniGPT-v2 7B, the five benchmarks) hold only valid keys and,
with their placeholder paths absent, stop at start-up with a one-line message naming the key."""
from __future__ import annotations

from pathlib import Path

import pytest

import mmrag  # noqa: F401
from mmrag.common.cli import REPO_ROOT
from mmrag.common.config import build_config
from mmrag.common.errors import DataFormatError
from mmrag.tasks.vqa_eval import READERS

import eval as eval_entry  # the repository's entry scripts
import train as train_entry

BENCHMARKS = {"okvqa": "vqa_official", "vizwiz": "vizwiz", "vsr": "vsr", "seed": "mc_seed", "mmbench": "mmbench_circular"}
MISSING_LLM = r"^error: config key 'model.llm.path' points at checkpoints/Llama-2-7b-chat-hf, which does not exist"


def test_train_config_is_the_minigpt_v2_setting():
    cfg = build_config(REPO_ROOT / "train_configs/dataengine_minigpt_v2_7b.yaml", [])
    assert cfg.model.projector.type == "pixel_shuffle" and cfg.model.vision_tower.kwargs.img_size == 448
    assert (cfg.model.lora.r, cfg.model.lora.alpha, list(cfg.model.lora.target_modules)) == (64, 16, ["q_proj", "v_proj"])
    assert cfg.model.conversation_template == "minigpt_v2"
    assert [d.views[0] for d in cfg.datasets.values()] == ["direct", "mc", "mc_shuffled"]


def test_train_config_fails_clearly_without_the_weights():
    with pytest.raises(SystemExit, match=MISSING_LLM):
        train_entry.main(["--cfg-path", "train_configs/dataengine_minigpt_v2_7b.yaml"])


@pytest.mark.parametrize("name, scorer", BENCHMARKS.items())
def test_eval_configs(name, scorer):
    path = f"eval_configs/benchmark_{name}.yaml"
    cfg = build_config(REPO_ROOT / path, [])
    assert cfg.evaluation.scorer == scorer and cfg.evaluation.format == "vqa_jsonl"
    with pytest.raises(DataFormatError, match=r"eval_data/.*questions.jsonl: file does not exist \(evaluation.question_file\)"):
        READERS["vqa_jsonl"](Path(cfg.evaluation.question_file), cfg.evaluation)
    if name == "okvqa":  # one end-to-end run: the model's placeholder path is reported first
        with pytest.raises(SystemExit, match=MISSING_LLM):
            eval_entry.main(["--cfg-path", path])
