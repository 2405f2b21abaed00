"""Shared fixtures: the tiny model configs (tower, LLM, LoRA) and a builder for tiny seeded models.

`tests` is a package (tests/__init__.py), so pytest puts the repository root on the import path by its
own rule and helpers import each other as `tests.<module>`; mmrag itself comes from `pip install -e .`.
"""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

TINY_TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 16}
TINY_LLM = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 4, "max_position_embeddings": 256}


def pytest_configure(config):
    """Prepare the tokenizer asset once, on the controller before any xdist worker starts, so the suite
    runs on a fresh clone (a no-op check when assets/llama_tokenizer is already prepared)."""
    if not hasattr(config, "workerinput"):
        from mmrag.common.assets import prepare_assets

        prepare_assets(["llama_tokenizer"], log=lambda _msg: None)


@pytest.fixture(scope="session")
def tiny_model_cfg():
    """A model: section (plain dict) for a tiny mm_llm with LoRA."""
    return {
        "arch": "mm_llm",
        "vision_tower": {"type": "hf_clip", "config": dict(TINY_TOWER), "select_layer": -1},
        "llm": {"config": dict(TINY_LLM)},
        "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
        "max_txt_len": 128,
    }


def build_tiny_model(model_cfg: dict, seed: int = 0):
    """A MultimodalLLM from a plain model-config dict (defaults merged), seeded, in eval mode."""
    import copy

    import torch
    from omegaconf import OmegaConf

    from mmrag.models.multimodal_llm import MultimodalLLM

    cfg = copy.deepcopy(model_cfg)
    torch.manual_seed(seed)
    return MultimodalLLM(OmegaConf.merge(MultimodalLLM.default_config(cfg), cfg)).eval()


def full_llm_cfg(model_cfg: dict, **keys) -> dict:
    """`model_cfg` with LoRA off and every LLM weight trained, plus model keys: for tests of the model's own
    loss terms and inputs, where LoRA's zero-initialised adapters would hide the LLM's share."""
    return {**model_cfg, "lora": {"enabled": False}, "llm": {**model_cfg["llm"], "freeze": False}, **keys}


@pytest.fixture(scope="module")
def tiny_model(tiny_model_cfg):
    """The tiny mm_llm of `tiny_model_cfg`, built once per test module."""
    return build_tiny_model(tiny_model_cfg)


@pytest.fixture(scope="session")
def tiny_model_builder():
    """`build_tiny_model` for tests that need a fresh model (conftest modules are not importable by name:
    several test folders have their own)."""
    return build_tiny_model
