"""Context modules: read a sample's retrieved examples (images + texts) and return LLM-width tokens.

The slot is `model.context_module`, configured as `{type: ...}` (default `{type: none}`: no module,
nothing built, nothing drawn from the random generator). A module is registered in CONTEXT_MODULES
and is called as

    module(ContextInputs) -> list of [num_tokens(n_i), llm_width] tensors, one per sample

`ContextInputs` gives each retrieved image already as the model's own visual tokens (tower +
projector: [n, num_visual_tokens, llm_width]) and each retrieved text as LLM input embeddings
([n, L, llm_width] with its mask), plus how many of each belong to which sample. The model writes
the returned tokens, in order, over the `<context>` positions of the prompt (the processor expands
one `<context>` into `num_tokens(n_examples)` CONTEXT_PLACEHOLDER_ID positions).
A module's token count is `fixed_tokens + tokens_per_example * n_examples` (a perceiver: fixed
latents; a concatenation of the examples: per example).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Sequence

import torch
from torch import nn

from mmrag.common.registry import CONTEXT_MODULES


@dataclass
class ContextInputs:
    image_tokens: torch.Tensor      # [n_images, num_visual_tokens, llm_width], all samples' images in order
    image_counts: Sequence[int]     # images per sample
    text_embeds: torch.Tensor       # [n_texts, L, llm_width]
    text_mask: torch.Tensor         # [n_texts, L], 1 on real tokens
    text_counts: Sequence[int]      # texts per sample


class ContextModule(nn.Module):
    DEFAULTS: Dict[str, Any] = {}
    fixed_tokens: int = 0
    tokens_per_example: int = 0

    def __init__(self, cfg, visual_tokens: int, llm_width: int) -> None:
        super().__init__()
        self.cfg = cfg

    @classmethod
    def default_config(cls, name: str) -> Dict[str, Any]:
        return {"type": name, **cls.DEFAULTS}

    def num_tokens(self, num_examples: int) -> int:
        """LLM tokens this module writes for a sample with `num_examples` retrieved examples."""
        return self.fixed_tokens + self.tokens_per_example * num_examples

    def forward(self, inputs: ContextInputs) -> List[torch.Tensor]:
        raise NotImplementedError


@CONTEXT_MODULES.register("none")
class NoContext:
    """The default: no context module (build_context_module returns None)."""

    @classmethod
    def default_config(cls, name: str) -> Dict[str, Any]:
        return {"type": name}


def context_defaults(user_cfg, default_type: str = "none") -> Dict[str, Any]:
    name = (user_cfg or {}).get("type") or default_type
    return CONTEXT_MODULES.get(name).default_config(name)


def build_context_module(cfg, visual_tokens: int, llm_width: int):
    """The configured module, or None for `{type: none}`."""
    cls = CONTEXT_MODULES.get(cfg["type"])
    return None if cls is NoContext else cls(cfg, visual_tokens, llm_width)
