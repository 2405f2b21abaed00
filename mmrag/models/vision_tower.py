"""Vision towers: HF CLIP, open_clip and timm, from local weights or random-initialised by config.

Every tower returns features of one layer (`select_layer`, counted like Python indices over the
block outputs) as [batch, tokens, width]: `patch` drops the CLS token, `cls_patch` keeps it,
`cls` keeps only it. Towers are frozen unless `freeze: false`.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from mmrag.common.errors import ConfigError
from mmrag.common.paths import require_path
from mmrag.common.registry import VISION_TOWERS
from mmrag.models.clip import load_hf_clip, load_open_clip
from mmrag.models.feature_cache import FeatureCache

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

    @property
    def grid(self) -> int:
        """Side of the square grid of patch tokens (what a pooling projector pools)."""
        return self.image_size // self.patch_size

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
    """Any timm model: `model_name` (+ `path` to a local weights file, else random init) and `kwargs`.

    A ViT gives its block outputs (`select_layer`, `select_feature` as for the other towers). A CNN
    (a model without `patch_embed`, e.g. `tf_efficientnet_lite0`) gives one spatial feature map,
    chosen by `feature_map`: `head` (the last map after the head convolution: what timm pools for
    its classifier) or `stride<k>` (the backbone stage of that reduction, from `feature_info`),
    flattened row by row to [batch, H*W, channels]: no CLS token. `image_size` (null: the pretrained
    config's input size) is what the processor resizes to; the token grid is the map's side at it.
    """

    DEFAULTS = {"type": "timm", "model_name": "vit_large_patch14_clip_224", "kwargs": {},
                "feature_map": "head", "image_size": None, "feature_cache": None}

    def __init__(self, cfg: Dict[str, Any]) -> None:
        super().__init__(cfg)
        import timm

        kwargs = dict(cfg.get("kwargs") or {})
        if cfg.get("path"):
            path = require_path("model.vision_tower.path", cfg["path"], "timm weights file")
            kwargs["pretrained_cfg_overlay"] = {"file": str(path)}
            kwargs["pretrained"] = True
        self.model = timm.create_model(cfg["model_name"], num_classes=0, **kwargs)
        self.is_cnn = not hasattr(self.model, "patch_embed")
        if self.is_cnn:
            self._init_cnn(cfg)
        else:
            for key in ("image_size", "feature_cache"):  # CNN-only keys: a ViT's size is kwargs.img_size
                if cfg.get(key):
                    raise ConfigError(f"model.vision_tower.{key} is for CNN towers; {cfg['model_name']} is a ViT "
                                      f"(set its input size with model.vision_tower.kwargs.img_size)")
            self.hidden_size = self.model.num_features
            self.image_size = self.model.patch_embed.img_size[0]
            self.patch_size = self.model.patch_embed.patch_size[0]
            self.has_cls = getattr(self.model, "num_prefix_tokens", 1) > 0
        self.freeze_if_configured()
        self.cache = FeatureCache.from_config(cfg, self) if self.is_cnn else None

    # ------------------------------------------------------------------ CNN towers
    def _init_cnn(self, cfg: Dict[str, Any]) -> None:
        if cfg["select_feature"] != "patch":
            raise ConfigError(f"model.vision_tower.select_feature={cfg['select_feature']!r}: a CNN tower "
                              f"({cfg['model_name']}) has no CLS token; use 'patch' (every cell of the map)")
        maps = cnn_feature_maps(self.model)
        if cfg["feature_map"] not in maps:
            raise ConfigError(f"model.vision_tower.feature_map={cfg['feature_map']!r} is not one of "
                              f"{', '.join(maps)} ({cfg['model_name']})")
        self.feature_map = cfg["feature_map"]
        self.hidden_size, self.reduction = maps[self.feature_map]
        self.image_size = int(cfg.get("image_size") or self.model.pretrained_cfg["input_size"][-1])
        self.patch_size = self.reduction
        self.has_cls = False
        names = [f"stride{f['reduction']}" for f in self.model.feature_info]
        self.stage_index = names.index(self.feature_map) if self.feature_map != "head" else None
        self._grid = self._measure_grid()

    @torch.no_grad()
    def _measure_grid(self) -> int:
        """Side of the map at `image_size`, measured by one forward (TF 'same' padding rounds up)."""
        was_training = self.training
        self.eval()
        side = self.feature_maps(torch.zeros(1, 3, self.image_size, self.image_size)).shape[-1]
        self.train(was_training)
        return int(side)

    def feature_maps(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[batch, 3, H, W] -> the selected map [batch, C, h, w]."""
        if self.stage_index is None:
            return self.model.forward_features(pixel_values)
        return self.model.forward_intermediates(pixel_values, indices=[self.stage_index], stop_early=True,
                                                intermediates_only=True)[0]

    @property
    def grid(self) -> int:
        return self._grid if self.is_cnn else super().grid

    @property
    def num_tokens(self) -> int:
        if self.is_cnn:
            return self.grid * self.grid
        return super().num_tokens

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if not self.is_cnn:
            return super().forward(pixel_values)
        if self.cache is not None:
            return self.cache.features(pixel_values, self._cnn_tokens)
        return self._cnn_tokens(pixel_values)

    def _cnn_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.feature_maps(pixel_values).flatten(2).transpose(1, 2)  # [b, h*w, C], row-major cells

    # ------------------------------------------------------------------ ViT towers
    def hidden_states(self, pixel_values: torch.Tensor) -> List[torch.Tensor]:
        n_blocks = len(self.model.blocks)
        out = self.model.forward_intermediates(
            pixel_values, indices=n_blocks, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True
        )
        return [torch.cat([p, t], dim=1) for t, p in out]


def cnn_feature_maps(model) -> Dict[str, Tuple[int, int]]:
    """`feature_map` name -> (channels, reduction) of a timm CNN: each feature_info stage, and `head`."""
    stages = [(int(f["num_chs"]), int(f["reduction"])) for f in model.feature_info]  # a list of dicts
    maps = {f"stride{r}": (c, r) for c, r in stages}
    maps["head"] = (model.num_features, stages[-1][1])
    return maps


def build_vision_tower(cfg: Dict[str, Any]) -> VisionTower:
    return VISION_TOWERS.get(cfg["type"])(cfg)
