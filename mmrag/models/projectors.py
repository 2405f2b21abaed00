"""Projectors from vision width to LLM width, picked by name (`linear`, `mlp{N}x_gelu`, `layernorm_linear`)."""
from __future__ import annotations

import re

from torch import nn

from mmrag.common.registry import PROJECTORS


@PROJECTORS.register("linear")
def linear(vision_width: int, llm_width: int) -> nn.Module:
    return nn.Linear(vision_width, llm_width)


@PROJECTORS.register("layernorm_linear")
def layernorm_linear(vision_width: int, llm_width: int) -> nn.Module:
    """GeMKR's projection: LayerNorm over the vision width, then one Linear."""
    return nn.Sequential(nn.LayerNorm(vision_width), nn.Linear(vision_width, llm_width))


def mlp_gelu(vision_width: int, llm_width: int, depth: int) -> nn.Module:
    layers = [nn.Linear(vision_width, llm_width)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(llm_width, llm_width)]
    return nn.Sequential(*layers)


for _depth in (2, 3, 4):
    PROJECTORS.register(f"mlp{_depth}x_gelu")(lambda v, l, d=_depth: mlp_gelu(v, l, d))


def build_projector(name: str, vision_width: int, llm_width: int) -> nn.Module:
    """`mlp{N}x_gelu` works for any N, registered or not; everything else goes through the registry."""
    match = re.fullmatch(r"mlp(\d+)x_gelu", name)
    if match and name not in PROJECTORS:
        return mlp_gelu(vision_width, llm_width, int(match.group(1)))
    return PROJECTORS.get(name)(vision_width, llm_width)
