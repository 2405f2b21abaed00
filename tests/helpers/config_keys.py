"""A built config as flat dotted keys, for tests that compare configs key by key."""
from __future__ import annotations

from typing import Any, Dict

from omegaconf import OmegaConf


def flat_keys(cfg, prefix: str = "") -> Dict[str, Any]:
    """{"model.llm.path": ..., ...} of a config (an OmegaConf node or a plain dict); lists stay values."""
    if OmegaConf.is_config(cfg):
        cfg = OmegaConf.to_container(cfg)
    out: Dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(flat_keys(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
