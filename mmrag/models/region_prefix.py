"""GeMKR's object-aware prefix tuning inside a frozen ViT.

In each of the last `layers` blocks, a learnable prefix (prefix_len x width), with the image's
region features (one vector per detected object, zero-padded) ADDED to it, contributes extra keys
and values. Image tokens attend to the prefix through a separate softmax whose output is scaled by
a per-head gate initialised at zero, so at initialisation the tower's output is exactly unchanged.
In the last block the prefix tokens are also run as queries; the visual tokens for the LLM are the
last block's CLS output followed by the first `num_output_tokens` prefix outputs.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    b, t, d = x.shape
    return x.view(b, t, n_heads, d // n_heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


class RegionPrefixEncoder(nn.Module):
    def __init__(self, tower: nn.Module, layers: int, prefix_len: int, num_output_tokens: int) -> None:
        super().__init__()
        if not hasattr(tower, "blocks"):
            raise ValueError(f"region prefix tuning needs a tower with CLIP-style blocks (hf_clip); got {type(tower).__name__}")
        n_blocks = len(tower.blocks)
        if not 1 <= layers <= n_blocks:
            raise ValueError(f"model.region_prefix.layers={layers} must be in 1..{n_blocks} (the tower's blocks)")
        if num_output_tokens > prefix_len:
            raise ValueError(f"region_prefix.num_output_tokens={num_output_tokens} exceeds prefix_len={prefix_len}")
        self.tower = tower
        self.first_adapted = n_blocks - layers
        self.num_output_tokens = num_output_tokens
        width, n_heads = tower.hidden_size, tower.blocks[0].self_attn.num_heads
        self.prefix = nn.Parameter(torch.randn(layers, prefix_len, width) * 0.02)
        self.gate = nn.Parameter(torch.zeros(layers, n_heads))  # zero: starts as the plain tower
        self.hidden_size = width

    @property
    def num_tokens(self) -> int:
        return 1 + self.num_output_tokens

    def _prefix_for(self, layer: int, regions: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        prefix = self.prefix[layer].unsqueeze(0).expand(batch, -1, -1)
        if regions is None:
            return prefix
        n = min(regions.shape[1], prefix.shape[1])
        pad = prefix.new_zeros(batch, prefix.shape[1] - n, prefix.shape[2])
        return prefix + torch.cat([regions[:, :n].to(prefix.dtype), pad], dim=1)

    def _gated_block(self, block: nn.Module, h: torch.Tensor, prefix: torch.Tensor, gate: torch.Tensor,
                     prefix_outputs: bool):
        """One CLIP block with gated prefix keys/values; returns (image tokens out, prefix tokens out or
        None: only the last block's prefix outputs are used, so the others skip that path)."""
        attn, n_heads = block.self_attn, block.self_attn.num_heads
        x, p = block.layer_norm1(h), block.layer_norm1(prefix)
        q = _heads(attn.q_proj(x), n_heads)
        k, v = _heads(attn.k_proj(x), n_heads), _heads(attn.v_proj(x), n_heads)
        pk, pv = _heads(attn.k_proj(p), n_heads), _heads(attn.v_proj(p), n_heads)
        image_part = F.scaled_dot_product_attention(q, k, v)
        prefix_part = F.scaled_dot_product_attention(q, pk, pv)  # its own softmax over the prefix only
        mixed = image_part + gate.view(1, -1, 1, 1).to(prefix_part.dtype) * prefix_part
        h = h + attn.out_proj(_merge(mixed))
        h = h + block.mlp(block.layer_norm2(h))
        if not prefix_outputs:
            return h, None
        # prefix tokens as queries over [image tokens; prefix]: the extra outputs GeMKR hands the LLM
        pq = _heads(attn.q_proj(p), n_heads)
        p_att = F.scaled_dot_product_attention(pq, torch.cat([k, pk], 2), torch.cat([v, pv], 2))
        p_out = prefix + attn.out_proj(_merge(p_att))
        p_out = p_out + block.mlp(block.layer_norm2(p_out))
        return h, p_out

    def forward(self, pixel_values: torch.Tensor, regions: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.tower.embed(pixel_values)
        prefix_out = None
        for i, block in enumerate(self.tower.blocks):
            if i < self.first_adapted:
                h = block(h, attention_mask=None)
                h = h[0] if isinstance(h, tuple) else h
                continue
            layer = i - self.first_adapted
            prefix = self._prefix_for(layer, regions, h.shape[0])
            last = i == len(self.tower.blocks) - 1
            h, prefix_out = self._gated_block(block, h, prefix, self.gate[layer], prefix_outputs=last)
        return torch.cat([h[:, :1], prefix_out[:, : self.num_output_tokens]], dim=1)
