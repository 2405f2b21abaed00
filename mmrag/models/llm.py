"""Causal LMs from local folders, or a tiny random LLaMA built from a config dict (tokenizers: mmrag.processors)."""
from __future__ import annotations

from typing import Any, Dict

import torch

from mmrag.common.paths import require_path

LLM_DEFAULTS: Dict[str, Any] = {
    "path": None,              # a local HF folder (LLaMA, Vicuna, Llama-2, Qwen, ...)
    "config": {},              # or: LlamaConfig kwargs for a random-initialised model
    "tokenizer_path": None,    # defaults to `path`; with neither, the bundled 32k LLaMA tokenizer
    "dtype": "float32",
    "attn_implementation": "sdpa",
    "gradient_checkpointing": False,
    "freeze": True,
    "keep_layers": None,       # with `path`: keep only the first N decoder layers (a shallower pretrained LLM)
}
LORA_DEFAULTS: Dict[str, Any] = {
    "enabled": True,
    "r": 8,
    "alpha": 16,
    "dropout": 0.05,
    "target_modules": ["q_proj", "v_proj"],
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def load_llm(cfg: Dict[str, Any], vocab_size: int):
    """The causal LM named by `cfg` (local folder or random config); never reaches for a hub."""
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    dtype = DTYPES[cfg["dtype"]]
    if cfg.get("path"):
        path = require_path("model.llm.path", cfg["path"], "HF model folder (config.json + weights)")
        # keep_layers: the config's layer count is lowered before the weights load, so the deeper
        # layers' weights are never materialised (transformers skips the checkpoint's unused keys)
        shallower = {"num_hidden_layers": int(cfg["keep_layers"])} if cfg.get("keep_layers") else {}
        model = AutoModelForCausalLM.from_pretrained(
            str(path), dtype=dtype, attn_implementation=cfg["attn_implementation"], local_files_only=True, **shallower
        )
    elif cfg.get("config"):
        config = LlamaConfig(**{"vocab_size": vocab_size, **cfg["config"]})
        config._attn_implementation = cfg["attn_implementation"]
        model = LlamaForCausalLM(config).to(dtype)
    else:
        raise ValueError("model.llm needs either 'path' (local HF folder) or 'config' (a LlamaConfig dict)")
    if cfg["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
    return model


def apply_lora(llm, cfg: Dict[str, Any]):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=cfg["r"], lora_alpha=cfg["alpha"], lora_dropout=cfg["dropout"],
        target_modules=list(cfg["target_modules"]), task_type="CAUSAL_LM",
    )
    return get_peft_model(llm, config)


def base_causal_lm(llm):
    """The transformers causal LM inside a peft wrapper (peft's LoRA layers stay in place in it)."""
    return llm.get_base_model() if hasattr(llm, "get_base_model") else llm
