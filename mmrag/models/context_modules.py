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
from typing import Any, Dict, List, Optional, Sequence

import torch
from torch import nn

from mmrag.common.errors import ConfigError
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


# ----------------------------------------------------------------------------- CaMML's perceivers
class PerceiverBlock(nn.Module):
    """Pre-norm block on a query sequence: self-attention, cross-attention to a memory (optional),
    feed-forward (4x width)."""

    def __init__(self, width: int, heads: int, cross: bool, dropout: float) -> None:
        super().__init__()
        self.self_norm, self.ffn_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.cross_norm = nn.LayerNorm(width) if cross else None
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True) if cross else None
        self.ffn = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor,
                query_pad: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [B, Nq, w]; memory [B, Nm, w]; *_pad [B, N]: True on padding (never attended to)."""
        h = self.self_norm(x)
        x = x + self.self_attn(h, h, h, key_padding_mask=query_pad, need_weights=False)[0]
        if self.cross_attn is not None:
            h = self.cross_norm(x)
            x = x + self.cross_attn(h, memory, memory, key_padding_mask=memory_pad, need_weights=False)[0]
        return x + self.ffn(self.ffn_norm(x))


class Perceiver(nn.Module):
    """`layers` PerceiverBlocks; cross-attention to the memory in the first only."""

    def __init__(self, width: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(PerceiverBlock(width, heads, i == 0, dropout) for i in range(layers))
        self.norm = nn.LayerNorm(width)

    def forward(self, x, memory, memory_pad, query_pad=None) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, memory, memory_pad, query_pad)
        return self.norm(x)


@CONTEXT_MODULES.register("camml_perceiver")
class CammlPerceiver(ContextModule):
    """CaMML's context module. Per shot i (an image + a text): V_i = image tokens (the projector's
    output) mapped to `width`, T_i = the text's LLM token embeddings mapped to `width`; the vision
    perceiver runs V_i as queries against T_i, the language perceiver T_i against V_i. The outputs
    of a sample's shots are concatenated (vision ones, language ones) and read by a context
    perceiver with two learned query sets of `queries` each (one per concatenation); both results
    are mapped to the LLM width: 2 x `queries` context tokens, however many shots.

    `random_shots` (training only): each forward keeps the first k shots of every sample, k drawn
    uniformly in [1, fewest shots of any sample in the batch] (CaMML's random-shot training; the
    draw is seeded by `seed`; `last_k` records it)."""

    DEFAULTS: Dict[str, Any] = {
        "width": 768,          # perceiver hidden size (the reference's 768)
        "heads": 12,
        "layers": 2,           # per perceiver; cross-attention in the first
        "queries": 64,         # per learned query set: 2 x queries context tokens (64 ScienceQA, 128 LLaVA-665K)
        "dropout": 0.0,
        "max_text_tokens": 512,  # a shot's text is cut to this many tokens
        "random_shots": True,  # training: keep a random k in [1, shots] per batch
        "match_embedding_scale": True,  # RMS-normalise the context tokens to the LLM's token embeddings' RMS
        "seed": 0,
    }

    def __init__(self, cfg, visual_tokens: int, llm_width: int) -> None:
        super().__init__(cfg, visual_tokens, llm_width)
        c = {**self.DEFAULTS, **{k: v for k, v in cfg.items() if k != "type"}}
        self.c = c
        width, heads, layers, dropout = int(c["width"]), int(c["heads"]), int(c["layers"]), float(c["dropout"])
        if width % heads:
            raise ConfigError(f"model.context_module: width={width} is not divisible by heads={heads}")
        if layers < 1 or int(c["queries"]) < 1:
            raise ConfigError("model.context_module: layers and queries must be at least 1")
        self.vision_in, self.text_in = nn.Linear(llm_width, width), nn.Linear(llm_width, width)
        self.vision_perceiver = Perceiver(width, heads, layers, dropout)
        self.language_perceiver = Perceiver(width, heads, layers, dropout)
        self.context_perceiver = Perceiver(width, heads, layers, dropout)
        self.vision_queries = nn.Parameter(torch.randn(int(c["queries"]), width) * 0.02)
        self.language_queries = nn.Parameter(torch.randn(int(c["queries"]), width) * 0.02)
        self.null_memory = nn.Parameter(torch.zeros(1, width))  # attended to always: a sample with no shot still works
        self.vision_out, self.language_out = nn.Linear(width, llm_width), nn.Linear(width, llm_width)
        self.out_gain = nn.Parameter(torch.ones(llm_width))
        self.fixed_tokens, self.tokens_per_example = 2 * int(c["queries"]), 0
        self._generator = torch.Generator().manual_seed(int(c["seed"]))
        self.last_k: Optional[int] = None

    def draw_k(self, max_shots: int) -> int:
        """k uniform in [1, max_shots] from the module's own seeded generator."""
        return int(torch.randint(1, max_shots + 1, (1,), generator=self._generator))

    def forward(self, inputs: ContextInputs) -> List[torch.Tensor]:
        counts = [int(n) for n in inputs.image_counts]
        if counts != [int(n) for n in inputs.text_counts]:
            raise ValueError(f"camml_perceiver: every shot needs an image and a text; images per sample {counts}, "
                             f"texts per sample {list(inputs.text_counts)}")
        keep = max(counts) if counts else 0
        if self.training and self.c["random_shots"] and counts and min(counts) > 0:
            keep = self.draw_k(min(counts))
            self.last_k = keep
        kept, start = [], 0  # the first `keep` shots of every sample: dropped ones are not computed
        for n in counts:
            kept += range(start, start + min(n, keep))
            start += n
        counts = [min(n, keep) for n in counts]
        text = inputs.text_embeds[kept, : int(self.c["max_text_tokens"])]
        text_mask = inputs.text_mask[kept, : text.shape[1]]
        text_pad = text_mask == 0
        v = self.vision_in(inputs.image_tokens[kept])
        t = self.text_in(text)
        no_pad = torch.zeros(v.shape[:2], dtype=torch.bool, device=v.device)
        v_out = self.vision_perceiver(v, t, text_pad) if len(v) else v
        t_out = self.language_perceiver(t, v, no_pad, text_pad) if len(t) else t
        tokens = list(self._read_context(v_out, t_out, text_pad, counts).unbind(0))
        if self.c["match_embedding_scale"]:
            tokens = self._to_embedding_scale(tokens, text, text_mask, counts)
        return tokens

    def _to_embedding_scale(self, tokens: List[torch.Tensor], text: torch.Tensor, mask: torch.Tensor,
                            counts: Sequence[int]) -> List[torch.Tensor]:
        """Each sample's context tokens RMS-normalised to the RMS of the LLM's own token embeddings of its
        shots' texts, times a learned per-channel gain: a fresh perceiver's outputs (LayerNorm'ed, RMS ~1
        per channel) would otherwise dwarf a small LLM's embeddings and swamp its attention. A sample
        without shots keeps its scale."""
        out, start = [], 0
        for tok, n in zip(tokens, counts):
            words = text[start:start + n][mask[start:start + n].bool()]
            start += n
            if not len(words):
                out.append(tok)
                continue
            target = words.detach().float().pow(2).mean().sqrt()
            rms = tok.float().pow(2).mean(dim=-1, keepdim=True).add(1e-6).sqrt()
            out.append((tok.float() / rms * target).to(tok.dtype) * self.out_gain)
        return out

    def _read_context(self, v_out, t_out, text_pad, counts: Sequence[int]) -> torch.Tensor:
        """Per sample: its shots' outputs concatenated, read by the two query sets -> [B, 2Q, llm_width]."""
        width = self.null_memory.shape[1]
        vis_mem, vis_pad, lang_mem, lang_pad = [], [], [], []
        start = 0
        for n in counts:
            shots = slice(start, start + n)
            start += n
            vis_mem.append(torch.cat([self.null_memory, v_out[shots].reshape(-1, width)]))
            lang_mem.append(torch.cat([self.null_memory, t_out[shots].reshape(-1, width)]))
            lang_pad.append(torch.cat([text_pad.new_zeros(1), text_pad[shots].reshape(-1)]))
            vis_pad.append(text_pad.new_zeros(vis_mem[-1].shape[0]))
        pad = lambda xs, value: nn.utils.rnn.pad_sequence(xs, batch_first=True, padding_value=value)  # noqa: E731
        b = len(counts)
        vis = self.context_perceiver(self.vision_queries.expand(b, -1, -1), pad(vis_mem, 0.0), pad(vis_pad, True))
        lang = self.context_perceiver(self.language_queries.expand(b, -1, -1), pad(lang_mem, 0.0), pad(lang_pad, True))
        return torch.cat([self.vision_out(vis), self.language_out(lang)], dim=1)
