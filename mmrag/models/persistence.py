"""A model's trainable weights on disk: LoRA adapters in peft's format (adapter/), every other
trainable weight in trainable.safetensors, and a small model_info.json."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mmrag.common.errors import ConfigError, UserError
from mmrag.common.paths import require_path

WEIGHTS_FILE = "trainable.safetensors"


class CorruptWeightsError(UserError, RuntimeError):
    """A weights file that exists but cannot be read (truncated, overwritten, not safetensors)."""


def save_trainable(model, out_dir: str | Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = model.trainable_state()
    if model.cfg.lora.enabled:
        model.llm.save_pretrained(str(out_dir / "adapter"))
        state = {n: t for n, t in state.items() if "lora_" not in n}
    save_file(state, str(out_dir / WEIGHTS_FILE))
    info = {"arch": model.cfg.arch, "trainable": model.num_trainable(), "setup": training_setup(model.cfg)}
    (out_dir / "model_info.json").write_text(json.dumps(info))
    return out_dir


def training_setup(cfg) -> Dict[str, object]:
    """The model keys that decide which weights a checkpoint holds (LoRA adapter or the whole LLM)."""
    llm = cfg.get("llm") or {}
    return {"model.lora.enabled": bool(cfg.lora.enabled), "model.llm.freeze": bool(llm.get("freeze", True))}


def check_training_setup(cfg, folder: Path) -> None:
    """A checkpoint loaded under other LoRA / freeze keys than it was trained with is refused naming
    the keys to set (else the failure is a missing adapter folder or unknown weight names)."""
    info_file = folder / "model_info.json"
    if not info_file.is_file():
        return
    saved = json.loads(info_file.read_text()).get("setup")
    if not saved:
        return   # written before the setup was recorded
    now = training_setup(cfg)
    differ = {k: v for k, v in saved.items() if now.get(k) != v}
    if differ:
        fix = " ".join(f"{k}={str(v).lower()}" for k, v in saved.items())
        raise ConfigError(f"model.checkpoint {folder} was trained with {fix}; this config has "
                          f"{' '.join(f'{k}={str(now[k]).lower()}' for k in differ)}: load it with {fix}")


def read_weights(path: Path) -> Dict[str, torch.Tensor]:
    """A safetensors file's tensors; an unreadable file is refused in one line naming it."""
    require_path("model.checkpoint", str(path), f"{WEIGHTS_FILE} written by save_trainable")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptWeightsError(f"{path} is not a readable safetensors file ({err}); it is truncated or "
                                  f"overwritten: point model.checkpoint at an intact folder") from err


def load_trainable(model, folder: str | Path) -> None:
    folder = require_path("model.checkpoint", str(folder), "folder written by save_trainable")
    check_training_setup(model.cfg, folder)
    state = read_weights(folder / WEIGHTS_FILE)
    if model.cfg.lora.enabled:
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        adapter = require_path("model.checkpoint", str(folder / "adapter"), "LoRA adapter folder (peft format)")
        try:
            weights = load_peft_weights(str(adapter))
        except SafetensorError as err:
            raise CorruptWeightsError(f"{adapter}: the LoRA adapter weights are unreadable ({err}); "
                                      f"point model.checkpoint at an intact folder") from err
        set_peft_model_state_dict(model.llm, weights)
    missing = [n for n in state if n not in dict(model.named_parameters())]
    if missing:
        raise ConfigError(f"{folder}/{WEIGHTS_FILE} has weights this model lacks: {missing[:3]}")
    model.load_state_dict(state, strict=False)
