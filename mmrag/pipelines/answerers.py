"""Answerer factories that data construction loads by name (`answerer.target=module:factory`).

They build a whole experiment's model from its config, so they live at the top layer, where every
registered component is importable.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

import mmrag  # noqa: F401  (registers every model class, task and runner the config may name)
from mmrag.common.config import build_config
from mmrag.common.registry import MODELS
from mmrag.processors import build_processor
from mmrag.surf.model_answerer import ModelAnswerer


def model_answerer(cfg_path: str, checkpoint: Optional[str] = None, overrides: Sequence[str] = (), batch_size: int = 16,
                   max_new_tokens: int = 16, image_root: Optional[str] = None, progress: bool = True) -> ModelAnswerer:
    """Build the experiment's model (its `model:` section, + `checkpoint`) and its processor and wrap
    them: the `load_answerer` factory for data construction."""
    options = list(overrides) + ([f"model.checkpoint={checkpoint}"] if checkpoint else [])
    cfg = build_config(cfg_path, options)
    model = MODELS.get(cfg.model.arch)(cfg.model)
    processor = build_processor(cfg.model, model)
    if torch.cuda.is_available() and cfg.run.device != "cpu":
        model = model.cuda()
    return ModelAnswerer(model.eval(), processor, batch_size, max_new_tokens, image_root, progress)
