"""CLIP loading, in one place: open_clip models (a built-in architecture name or an explicit
architecture dict; random init or a local weights file) and transformers CLIP from a local folder.

The vision towers (vision_tower.py) keep the image trunk of what these return; the retrieval
embedder (mmrag/retrieval/clip_embedder.py) keeps the whole model, text tower included. Callers
check that paths exist (each names its own config key); nothing here reaches a hub.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

from torch import nn


def load_open_clip(model_name: Optional[str] = None, arch: Optional[Dict[str, Any]] = None,
                   weights: Optional[str | Path] = None) -> nn.Module:
    """An open_clip CLIP in eval mode: built-in architecture `model_name`, else `arch` (the keyword
    arguments of `open_clip.CLIP`: embed_dim, vision_cfg, text_cfg); random init (seed the global
    RNG first for a reproducible one), then the local `weights` file if given (safetensors or a torch
    state dict; open_clip's own reader, so 'module.' prefixes and resized position tables load)."""
    import open_clip

    if model_name:
        model = open_clip.create_model(model_name, pretrained=None)
    elif arch:
        model = open_clip.CLIP(**arch)
    else:
        raise ValueError("load_open_clip needs a model_name or an arch dict")  # callers validate config first
    if weights:
        open_clip.load_checkpoint(model, str(weights))
    return model.eval()


def load_hf_clip(path: str | Path, vision_only: bool = False) -> nn.Module:
    """A transformers CLIPModel (or only its CLIPVisionModel) from a local folder, in eval mode."""
    from transformers import CLIPModel, CLIPVisionModel

    cls = CLIPVisionModel if vision_only else CLIPModel
    return cls.from_pretrained(str(path), local_files_only=True).eval()
