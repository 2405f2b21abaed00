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


@PROJECTORS.register("pixel_shuffle")
class PixelShuffleProjector(Projector):
    """MiniGPT-v2's projector: groups of 4 adjacent patch tokens concatenated (4 x the vision width),
    then `depth` Linear layers (1: the single linear map MiniGPT-v2 uses); an image costs n/4 tokens
    (EVA-ViT-g at 448 px: 32 x 32 = 1024 patches -> 256). `layout` row: 4 consecutive patches of a
    row (MiniGPT-v2's reshape of the raster sequence; the grid side must be divisible by 4); square:
    2 x 2 blocks, row-major inside each block (the side must be even). `layernorm` normalises each
    patch token over the vision width first (MiniGPT-v2's ln_vision)."""

    DEFAULTS = {"layout": "row", "depth": 1, "layernorm": False}
    LAYOUTS = {"row": 4, "square": 2}   # the grid side must be a multiple of this

    def __init__(self, cfg, vision_width: int, llm_width: int, input_grid: Optional[int] = None) -> None:
        layout = cfg.get("layout", "row")
        if layout not in self.LAYOUTS:
            raise ConfigError(f"model.projector.layout={layout!r}: expected one of {', '.join(self.LAYOUTS)}")
        if input_grid is None:
            raise ConfigError("model.projector.type=pixel_shuffle needs a square grid of patch features: set "
                              "model.vision_tower.select_feature=patch and disable model.region_prefix")
        if input_grid % self.LAYOUTS[layout]:
            raise ConfigError(f"model.projector.type=pixel_shuffle (layout {layout}): the vision tower's patch grid "
                              f"{input_grid}x{input_grid} cannot be cut into groups of 4 adjacent patches (its side "
                              f"must be a multiple of {self.LAYOUTS[layout]})")
        layers = mlp_layers(4 * vision_width, llm_width, int(cfg.get("depth", 1)))
        super().__init__(*layers)
        self.layout, self.input_grid, self.num_layers = layout, input_grid, len(layers)
        # registered after the Linear layers, so Sequential's own iteration must not be used in forward
        self.norm = nn.LayerNorm(vision_width) if cfg.get("layernorm", False) else None

    def num_tokens(self, num_input_tokens: int) -> int:
        return num_input_tokens // 4

    def group(self, features: torch.Tensor) -> torch.Tensor:
        """[b, side*side, c] -> [b, side*side/4, 4c]: each row the concatenation of 4 adjacent patches."""
        b, n, c = features.shape
        if n != self.input_grid ** 2:
            raise ValueError(f"pixel_shuffle: expected {self.input_grid ** 2} patch tokens, got {n}")
        if self.layout == "row":
            return features.reshape(b, n // 4, 4 * c)
        half = self.input_grid // 2
        blocks = features.reshape(b, half, 2, half, 2, c).permute(0, 1, 3, 2, 4, 5)  # [b, by, bx, dy, dx, c]
        return blocks.reshape(b, half * half, 4 * c)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            features = self.norm(features)
        out = self.group(features)
        for i in range(self.num_layers):
            out = self[i](out)
        return out


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
