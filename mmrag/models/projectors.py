"""Projectors from the vision features to LLM-width tokens, configured as `{type: ..., ...}`.

Every projector is registered in PROJECTORS, declares its DEFAULTS (validated by the config
system: unknown keys fail naming file:line) and reports `num_tokens(num_input_tokens)`: how many
LLM positions one image's features become. Constructor: `(cfg, vision_width, llm_width, input_grid)`
where `input_grid` is the side of the square patch grid the features form (None when they do
not form one: CLS tokens, region-prefix outputs).

The modules subclass nn.Sequential so that parameter names (projector.0.weight, ...) and the
order in which weights are drawn stay those of earlier checkpoints and seeded runs.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmrag.common.errors import ConfigError
from mmrag.common.registry import PROJECTORS


class Projector(nn.Sequential):
    DEFAULTS: Dict[str, Any] = {}

    @classmethod
    def default_config(cls, name: str) -> Dict[str, Any]:
        return {"type": name, **cls.DEFAULTS}

    def num_tokens(self, num_input_tokens: int) -> int:
        """LLM tokens per image for `num_input_tokens` vision tokens: one each, unless pooled."""
        return num_input_tokens


@PROJECTORS.register("linear")
class LinearProjector(Projector):
    def __init__(self, cfg, vision_width: int, llm_width: int, input_grid: Optional[int] = None) -> None:
        super().__init__(nn.Linear(vision_width, llm_width))


@PROJECTORS.register("layernorm_linear")
class LayerNormLinearProjector(Projector):
    """GeMKR's projection: LayerNorm over the vision width, then one Linear."""

    def __init__(self, cfg, vision_width: int, llm_width: int, input_grid: Optional[int] = None) -> None:
        super().__init__(nn.LayerNorm(vision_width), nn.Linear(vision_width, llm_width))


def mlp_layers(vision_width: int, llm_width: int, depth: int) -> List[nn.Module]:
    if depth < 1:
        raise ConfigError(f"model.projector.depth must be >= 1, got {depth}")
    layers: List[nn.Module] = [nn.Linear(vision_width, llm_width)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(llm_width, llm_width)]
    return layers


@PROJECTORS.register("mlp_gelu")
class MLPGeluProjector(Projector):
    """`depth` Linear layers with GELU between them (LLaVA-1.5's projector is depth 2)."""

    DEFAULTS = {"depth": 2}

    def __init__(self, cfg, vision_width: int, llm_width: int, input_grid: Optional[int] = None) -> None:
        super().__init__(*mlp_layers(vision_width, llm_width, int(cfg.get("depth", 2))))


@PROJECTORS.register("mlp2x_gelu")
class MLP2xGeluProjector(Projector):
    """LLaVA-1.5's name for Linear -> GELU -> Linear."""

    def __init__(self, cfg, vision_width: int, llm_width: int, input_grid: Optional[int] = None) -> None:
        super().__init__(*mlp_layers(vision_width, llm_width, 2))


@PROJECTORS.register("pooled_mlp")
class PooledMLPProjector(Projector):
    """Average-pools the square patch grid to `grid` x `grid` cells, then the GELU MLP: an image
    costs grid**2 LLM tokens whatever the tower's resolution (e.g. grid 4 -> 16 tokens)."""

    DEFAULTS = {"grid": 4, "depth": 2}

    def __init__(self, cfg, vision_width: int, llm_width: int, input_grid: Optional[int] = None) -> None:
        grid = int(cfg.get("grid", 4))
        if input_grid is None:
            raise ConfigError("model.projector.type=pooled_mlp needs a square grid of patch features: set "
                              "model.vision_tower.select_feature=patch and disable model.region_prefix")
        if not 1 <= grid <= input_grid:
            raise ConfigError(f"model.projector.grid={grid} must be in 1..{input_grid}: the vision tower's patch "
                              f"grid is {input_grid}x{input_grid}")
        super().__init__(*mlp_layers(vision_width, llm_width, int(cfg.get("depth", 2))))
        self.grid, self.input_grid = grid, input_grid

    def num_tokens(self, num_input_tokens: int) -> int:
        return self.grid * self.grid

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, n, c = features.shape
        side = self.input_grid
        cells = features.transpose(1, 2).reshape(b, c, side, side)
        pooled = F.adaptive_avg_pool2d(cells, self.grid).flatten(2).transpose(1, 2)  # [b, grid*grid, c]
        return super().forward(pooled)


def projector_defaults(user_cfg, default_type: str) -> Dict[str, Any]:
    """The DEFAULTS of the projector type the user's `model.projector` names (else `default_type`);
    the old bare-string form is refused with the form to write instead."""
    if isinstance(user_cfg, str):
        raise ConfigError(f"model.projector must be a mapping like {{type: {user_cfg}}}, got the string {user_cfg!r}")
    name = (user_cfg or {}).get("type") or default_type
    return PROJECTORS.get(name).default_config(name)


def build_projector(cfg: Dict[str, Any], vision_width: int, llm_width: int,
                    input_grid: Optional[int] = None) -> Projector:
    return PROJECTORS.get(cfg["type"])(cfg, vision_width, llm_width, input_grid)
