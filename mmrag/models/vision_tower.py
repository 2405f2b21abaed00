"""Vision towers: HF CLIP, open_clip and timm, from local weights or random-initialised by config.

Every tower returns features of one layer (`select_layer`, counted like Python indices over the
block outputs) as [batch, tokens, width]: `patch` drops the CLS token, `cls_patch` keeps it,
`cls` keeps only it. Towers are frozen unless `freeze: false`.
"""
from __future__ import annotations

from typing import Any, Dict, List

import torch
from torch import nn

from mmrag.common.paths import require_path
from mmrag.common.registry import VISION_TOWERS
from mmrag.models.clip import load_hf_clip, load_open_clip

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
COMMON_DEFAULTS: Dict[str, Any] = {
    "type": "hf_clip",
    "path": None,
    "select_layer": -2,
    "select_feature": "patch",
    "freeze": True,
    "image_mean": list(CLIP_MEAN),
    "image_std": list(CLIP_STD),
}


def _select(tokens: torch.Tensor, mode: str, has_cls: bool = True) -> torch.Tensor:
    if mode == "cls_patch":
        return tokens
    if mode == "patch":
        return tokens[:, 1:] if has_cls else tokens
    if mode == "cls":
        return tokens[:, :1]
    raise ValueError(f"select_feature must be patch, cls_patch or cls, got {mode!r}")


class VisionTower(nn.Module):
    """Base class: subclasses set `hidden_size`, `image_size`, `num_tokens` and implement `layers`."""

    DEFAULTS: Dict[str, Any] = {}

    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__()
        self.cfg = cfg
        self.select_layer = int(cfg["select_layer"])
        self.select_feature = cfg["select_feature"]
        self.image_mean = tuple(cfg["image_mean"])
        self.image_std = tuple(cfg["image_std"])

    @classmethod
    def default_config(cls) -> Dict[str, Any]:
        return {**COMMON_DEFAULTS, **cls.DEFAULTS}

    def freeze_if_configured(self) -> None:
        if self.cfg["freeze"]:
            self.requires_grad_(False)
            self.eval()

    def train(self, mode: bool = True):
        # a frozen tower stays in eval mode (no dropout) whatever the runner asks
        return super().train(mode and not self.cfg["freeze"])

    def hidden_states(self, pixel_values: torch.Tensor) -> List[torch.Tensor]:
        raise NotImplementedError

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        states = self.hidden_states(pixel_values)
        return _select(states[self.select_layer], self.select_feature, self.has_cls)

    @property
    def num_tokens(self) -> int:
        patches = (self.image_size // self.patch_size) ** 2
        return {"patch": patches, "cls_patch": patches + 1, "cls": 1}[self.select_feature]

    has_cls = True


@VISION_TOWERS.register("hf_clip")
class HFCLIPVisionTower(VisionTower):
    """transformers CLIPVisionModel from a local folder (CLIPModel or CLIPVisionModel) or a config dict."""

    DEFAULTS = {"type": "hf_clip", "config": {}}

    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__(cfg)
        from transformers import CLIPVisionConfig, CLIPVisionModel

        if cfg.get("path"):
            path = require_path("model.vision_tower.path", cfg["path"], "CLIP folder (config.json + weights)")
            self.model = load_hf_clip(path, vision_only=True)
        elif cfg.get("config"):
            self.model = CLIPVisionModel(CLIPVisionConfig(**cfg["config"]))
        else:
            raise ValueError("model.vision_tower needs either 'path' (local CLIP folder) or 'config' (architecture)")
        vc = self.model.config
        self.hidden_size, self.image_size, self.patch_size = vc.hidden_size, vc.image_size, vc.patch_size
        self.freeze_if_configured()

    def hidden_states(self, pixel_values: torch.Tensor) -> List[torch.Tensor]:
        out = self.model(pixel_values=pixel_values, output_hidden_states=True)
        return list(out.hidden_states[1:])  # block outputs only; index 0 is the embedding

    # pieces GeMKR's prefix tuning runs block by block
    @property
    def _trunk(self) -> nn.Module:
        # transformers 5 flattened CLIPVisionModel; 4.x nests the trunk under .vision_model
        return getattr(self.model, "vision_model", self.model)

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._trunk.pre_layrnorm(self._trunk.embeddings(pixel_values))

    @property
    def blocks(self) -> nn.ModuleList:
        return self._trunk.encoder.layers


@VISION_TOWERS.register("open_clip")
class OpenCLIPVisionTower(VisionTower):
    """open_clip visual trunk: `model_name` + local `path` (weights file), or `config` (a model cfg dict)."""

    DEFAULTS = {"type": "open_clip", "model_name": "ViT-L-14", "config": {}}

    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__(cfg)
        if cfg.get("config"):
            model = load_open_clip(arch=cfg["config"])
        else:
            path = require_path("model.vision_tower.path", cfg.get("path"), "open_clip weights file")
            model = load_open_clip(model_name=cfg["model_name"], weights=path)
        self.visual = model.visual
        self.hidden_size = self.visual.transformer.width
        size = self.visual.image_size
        self.image_size = size[0] if isinstance(size, (tuple, list)) else size
        patch = self.visual.patch_size
        self.patch_size = patch[0] if isinstance(patch, (tuple, list)) else patch
        self.freeze_if_configured()

    def hidden_states(self, pixel_values: torch.Tensor) -> List[torch.Tensor]:
        out = self.visual.forward_intermediates(
            pixel_values, indices=len(self.visual.transformer.resblocks), output_fmt="NLC",
            output_extra_tokens=True, intermediates_only=True,
        )
        prefix = out["image_intermediates_prefix"]
        return [torch.cat([p, t], dim=1) for p, t in zip(prefix, out["image_intermediates"])]


@VISION_TOWERS.register("timm")
class TimmVisionTower(VisionTower):
    """Any timm ViT: `model_name` (+ `path` to a local weights file, else random init) and `kwargs`."""

    DEFAULTS = {"type": "timm", "model_name": "vit_large_patch14_clip_224", "kwargs": {}}

    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__(cfg)
        import timm

        kwargs = dict(cfg.get("kwargs") or {})
        if cfg.get("path"):
            path = require_path("model.vision_tower.path", cfg["path"], "timm weights file")
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
            kwargs["pretrained"] = True
        self.model = timm.create_model(cfg["model_name"], num_classes=0, **kwargs)
        self.hidden_size = self.model.num_features
        self.image_size = self.model.patch_embed.img_size[0]
        self.patch_size = self.model.patch_embed.patch_size[0]
        self.has_cls = getattr(self.model, "num_prefix_tokens", 1) > 0
        self.freeze_if_configured()

    def hidden_states(self, pixel_values: torch.Tensor) -> List[torch.Tensor]:
        n_blocks = len(self.model.blocks)
        out = self.model.forward_intermediates(
            pixel_values, indices=n_blocks, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
        )
        return [torch.cat([p, t], dim=1) for t, p in out]


def build_vision_tower(cfg: Dict[str, Any]) -> VisionTower:
    return VISION_TOWERS.get(cfg["type"])(cfg)
