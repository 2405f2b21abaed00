"""The model side of batched beam search: a prefill over the prompts, then one forward a step over every
beam row. Two implementations with one interface (`prefill(embeds, mask)`, `step(parent_rows, tokens)`,
both returning next-token logits per beam row):

- `HFCacheDecoder` works with any causal LM: the prompt's keys/values are copied to every beam row
  of the model's own cache, and every step re-gathers the whole cache by parent row.
- `SharedPromptDecoder` (LLaMA-layout decoders: llama, mistral, qwen2) keeps each prompt's keys/values
  once, and every generated token's keys/values once, after the prompt's, in the slot (step, beam) it
  was written to: a step writes one slot per beam and copies nothing else (no per-step gather of any
  cache by parent row); each beam attends to its prompt and its ancestors' slots through a mask that
  follows the parents. Attention is one score matmul and one value matmul per prompt for all its
  beams. It runs the model's own
  submodules (norms, projections, LoRA layers included, rotary, MLP), so the weights and their
  adapters are the model's.

Rows are laid out (group, prompt, beam in group), as `group_beam_search` lays them out; a beam's
parent is always a row of the same prompt.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from mmrag.models.llm import base_causal_lm

DECODERS = ("auto", "hf_cache", "shared_prompt", "shared_prompt_fused")
SHARED_PROMPT_MODEL_TYPES = ("llama", "mistral", "qwen2")


def supports_shared_prompt(model: nn.Module) -> bool:
    """Whether `model` has the LLaMA decoder layout that SharedPromptDecoder drives module by module."""
    lm = base_causal_lm(model)
    inner = getattr(lm, "model", None)
    return (getattr(lm.config, "model_type", None) in SHARED_PROMPT_MODEL_TYPES and inner is not None
            and all(hasattr(inner, name) for name in ("layers", "embed_tokens", "norm", "rotary_emb"))
            and hasattr(lm, "lm_head"))


def make_beam_decoder(kind: str, model: nn.Module, row_prompt: torch.Tensor, groups: int, group_size: int,
                      max_new_tokens: int, cuda_graphs: bool = True, workspace: Optional["BeamGraphWorkspace"] = None):
    """`auto` picks the shared-prompt decoder where the model supports it, else the HF-cache decoder.
    `cuda_graphs`: replay the shared-prompt decoder's steps from a CUDA graph on a GPU."""
    if kind not in DECODERS:
        raise ValueError(f"decoder {kind!r}: expected one of {', '.join(DECODERS)}")
    if kind == "auto":
        kind = "shared_prompt" if supports_shared_prompt(model) else "hf_cache"
    if kind == "hf_cache":
        return HFCacheDecoder(model, row_prompt, max_new_tokens)
    if not supports_shared_prompt(model):
        raise ValueError(f"decoder 'shared_prompt' needs a decoder of type {', '.join(SHARED_PROMPT_MODEL_TYPES)}, "
                         f"got {getattr(base_causal_lm(model).config, 'model_type', type(model).__name__)!r}")
    return SharedPromptDecoder(model, groups, group_size, max_new_tokens, cuda_graphs, workspace,
                               fused=kind == "shared_prompt_fused")


def padded_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded prompts: real positions count from 0 at each prompt's first token."""
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)


def prompt_attention_mask(mask: torch.Tensor) -> torch.Tensor:
    """(prompts, 1, len, len) True where a query position may attend a key position: causal, real keys.
    A padding query also sees itself, so that its (never read) output stays finite, not a softmax of nothing."""
    length = mask.shape[1]
    idx = torch.arange(length, device=mask.device)
    causal = idx[None, :] <= idx[:, None]
    return ((causal[None] & mask.bool()[:, None, :]) | torch.eye(length, dtype=torch.bool, device=mask.device))[:, None]


class HFCacheDecoder:
    """Any causal LM through its own KV cache: one row per beam, re-gathered by parent row every step."""

    def __init__(self, model: nn.Module, row_prompt: torch.Tensor, max_new_tokens: int) -> None:
        self.model, self.row_prompt, self.max_new_tokens = model, row_prompt, max_new_tokens
        self.cache = None
        self.mask: Optional[torch.Tensor] = None  # (rows, prompt_len + max_new_tokens - 1), only with padding
        self.next_position: Optional[torch.Tensor] = None  # (rows,) position of the next fed token
        self.prompt_len, self.fed = 0, 0

    def prefill(self, embeds: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Run the prompts, expand the cache to one row per beam; last-position logits per row."""
        kwargs = {}
        if mask is not None:
            kwargs = {"attention_mask": mask, "position_ids": padded_positions(mask)}
            rows_mask = mask[self.row_prompt]
            self.mask = torch.cat([rows_mask, rows_mask.new_ones(len(rows_mask), self.max_new_tokens - 1)], dim=1)
            self.next_position = mask.sum(1)[self.row_prompt]
        out = self.model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1, **kwargs)
        self.cache, self.prompt_len = out.past_key_values, embeds.shape[1]
        self.cache.reorder_cache(self.row_prompt)  # index_select: prompt rows -> beam rows
        return out.logits[:, -1][self.row_prompt]

    def step(self, parent_rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Feed each beam's new token after its parent's cache; next-token logits per row."""
        self.cache.reorder_cache(parent_rows)
        kwargs = {}
        if self.mask is not None:
            kwargs = {"attention_mask": self.mask[:, : self.prompt_len + self.fed + 1],
                      "position_ids": (self.next_position + self.fed)[:, None]}
        out = self.model(input_ids=tokens[:, None], past_key_values=self.cache, use_cache=True, **kwargs)
        self.cache, self.fed = out.past_key_values, self.fed + 1
        return out.logits[:, -1]


class CudaGraphCall:
    """`fn(*inputs)` replayed from a CUDA graph: the first call runs eagerly (it also warms up cuBLAS and
    the allocator), the second captures the graph and replays it, later calls copy their inputs into
    the captured input buffers and replay. Outputs are the graph's own tensors, overwritten by the next
    call. `fn` must keep every shape fixed and never read a device value on the host; with `enabled`
    false (or on the CPU) every call runs eagerly. A 7B decode step launches ~1,500 kernels: replaying
    them as one graph takes the host (Python + launch time) out of the step.
    """

    def __init__(self, fn, enabled: bool) -> None:
        self.fn, self.enabled = fn, enabled
        self.calls = 0
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.inputs: Tuple[torch.Tensor, ...] = ()
        self.outputs = None

    def __call__(self, *inputs: torch.Tensor):
        self.calls += 1
        if not self.enabled or self.calls == 1:
            return self.fn(*inputs)
        if self.graph is None:
            self.inputs = tuple(x.clone() for x in inputs)
            self.outputs = self._capture()
        else:
            for buffer, x in zip(self.inputs, inputs):
                buffer.copy_(x)
        self.graph.replay()
        return self.outputs

    def _capture(self):
        """Record fn on a side stream. Not `torch.cuda.graph(...)`: that context also synchronises and
        empties the allocator's and the pinned-host caches, which costs more than the capture itself
        when a search captures once per prompt batch."""
        self.graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.graph.capture_begin()
            try:
                outputs = self.fn(*self.inputs)
            finally:
                self.graph.capture_end()
        torch.cuda.current_stream().wait_stream(stream)
        return outputs


class BeamGraphWorkspace:
    """Fixed-shape buffers and CUDA graphs kept across `group_beam_search` calls of equal shapes.

    Pass one workspace to every batch of an evaluation: each shape is then captured once, not once per
    batch (a capture costs about two eager steps of host time). Prompt lengths are padded (masked) up
    to a multiple of `length_multiple` so that batches of slightly different lengths share a graph.
    """

    def __init__(self, length_multiple: int = 32) -> None:
        if length_multiple < 1:
            raise ValueError(f"length_multiple must be >= 1, got {length_multiple}")
        self.length_multiple = length_multiple
        self._entries: Dict[tuple, object] = {}

    def padded_length(self, length: int) -> int:
        return -(-length // self.length_multiple) * self.length_multiple

    def entry(self, key: tuple, build: Callable[[], object]) -> object:
        """The object stored under `key`, built on first use."""
        if key not in self._entries:
            self._entries[key] = build()
        return self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)


class _DecodeBuffers:
    """Everything a shared-prompt decode step reads or writes, at fixed addresses (a graph replays them).

    Per layer, one key and one value tensor of a prompt, (prompts, kv_heads, length + columns * beams,
    head_dim): the prompt's `length` (padded) positions, then the generated tokens in slots `length +
    column * beams + beam` (beam = group * group_size + beam in group): step t writes column t of every
    beam and nothing else. `visible[p, b, c, b2]` says that beam b of prompt p descends from the token
    written at slot (c, b2): the step's parents reorder this small table (prompts x beams x columns x
    beams booleans), never the cache.
    """

    def __init__(self, layers: int, prompts: int, length: int, rows: int, kv_heads: int, head_dim: int,
                 columns: int, dtype: torch.dtype, device: torch.device) -> None:
        beams = rows // prompts
        shape = (prompts, kv_heads, length + columns * beams, head_dim)
        self.kv = [(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
                   for _ in range(layers)]
        self.length = length
        self.prompt_bias = torch.zeros((prompts, 1, 1, 1, length), dtype=dtype, device=device)  # 0 real, -inf not
        self.visible = torch.zeros((prompts, beams, columns, beams), dtype=torch.bool, device=device)
        self.own_slot = torch.eye(beams, dtype=torch.bool, device=device)  # a beam's new token is its own slot
        self.column_ids = torch.arange(columns, device=device)
        self.beam_ids = torch.arange(beams, device=device)
        self.write_at = torch.zeros(1, dtype=torch.long, device=device)  # the column this step writes
        self.positions = torch.zeros((rows, 1), dtype=torch.long, device=device)  # position id fed this step
        self.step: Optional[CudaGraphCall] = None

    def start(self, real: torch.Tensor, row_real: torch.Tensor) -> None:
        """A new batch (the prefill writes its prompt keys/values): padded prompt columns masked, nothing
        generated yet. real: (prompts, len) 1 at real prompt positions; row_real: (rows,) real length per row."""
        length = real.shape[1]
        self.prompt_bias.fill_(float("-inf"))
        self.prompt_bias[:, 0, 0, 0, :length].masked_fill_(real.bool(), 0.0)
        self.visible.fill_(False)
        self.positions.copy_(row_real[:, None])


class SharedPromptDecoder:
    """LLaMA-layout decoding with each prompt's keys/values stored once for all of its beams.

    Attention of a beam row = softmax over [its prompt's keys ; its ancestors' generated keys], computed
    per prompt for all its beams over the prompt's keys and every generated slot (slots of other
    lineages and of later steps masked), in the model's dtype with a float32 softmax, as transformers'
    eager attention does. Every decode step has the same
    shapes and keeps its counters on the device, so on a GPU the step is replayed from a CUDA graph
    (`cuda_graphs`), kept across calls in `workspace` when one is given, and the host never waits for it.
    """

    def __init__(self, model: nn.Module, groups: int, group_size: int, max_new_tokens: int,
                 cuda_graphs: bool = True, workspace: Optional[BeamGraphWorkspace] = None, fused: bool = False) -> None:
        self.lm = base_causal_lm(model)
        self.groups, self.group_size, self.max_new_tokens = groups, group_size, max_new_tokens
        self.cuda_graphs, self.workspace = cuda_graphs, workspace
        self.layers = self.lm.model.layers
        attn = self.layers[0].self_attn
        config = self.lm.config
        self.head_dim = attn.head_dim
        self.kv_heads = config.num_key_value_heads
        self.heads_per_kv = config.num_attention_heads // self.kv_heads
        self.scaling = attn.scaling
        self.buffers: Optional[_DecodeBuffers] = None
        self.prompts, self.fed = 0, 0
        self.fused = self._fused_weights() if fused else None

    def _fused_weights(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Per layer [q; k; v] and [gate; up] weights concatenated, so a decode step runs 2 wide matmuls
        instead of 5 narrow ones (a few hundred beam rows fill few tiles of a narrow matmul). Only for
        plain bias-free Linear projections (no LoRA: use the unfused decoder or merge the adapters).
        Kept in the workspace (one copy per model, ~1.4x the projections' memory)."""
        for layer in self.layers:
            a, m = layer.self_attn, layer.mlp
            mods = (a.q_proj, a.k_proj, a.v_proj, m.gate_proj, m.up_proj)
            if any(type(mod) is not nn.Linear or mod.bias is not None for mod in mods):
                raise ValueError("decoder 'shared_prompt_fused' needs plain bias-free nn.Linear q/k/v/gate/up "
                                 "projections (no LoRA); use 'shared_prompt'")

        def build():
            return [(torch.cat([l.self_attn.q_proj.weight, l.self_attn.k_proj.weight, l.self_attn.v_proj.weight]),
                     torch.cat([l.mlp.gate_proj.weight, l.mlp.up_proj.weight])) for l in self.layers]

        if self.workspace is None:
            return build()
        return self.workspace.entry(("fused_weights", id(self.lm)), build)

    def prefill(self, embeds: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        """The prompts through the model's own layers, as its forward runs them, with each layer's keys/values
        written once, straight into the decode buffers (no transformers cache to copy from), and the last
        layer's queries, MLP and head run at the last position only (the only one read). Logits per row."""
        self.prompts, length = embeds.shape[:2]
        real = mask if mask is not None else torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        rows = self.groups * self.prompts * self.group_size
        self.buffers = self._buffers(length, rows, embeds.dtype, embeds.device)
        self.buffers.start(real, self._per_row(real.sum(1)))
        if mask is None:
            positions = torch.arange(length, device=embeds.device)[None].expand(self.prompts, -1)
        else:
            positions = padded_positions(mask)
        cos, sin = self.lm.model.rotary_emb(embeds, positions)
        cos, sin = cos[:, :, None], sin[:, :, None]  # (prompts, len, 1, head_dim): heads stay behind positions
        allowed = None if mask is None else prompt_attention_mask(mask)
        x = embeds
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            attended = self._prefill_attention(i, layer, layer.input_layernorm(x), cos, sin, allowed, last)
            x = (x[:, -1:] if last else x) + attended
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self._per_row(self.lm.lm_head(self.lm.model.norm(x))[:, -1])

    def _prefill_attention(self, i: int, layer: nn.Module, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                           allowed: Optional[torch.Tensor], last: bool) -> torch.Tensor:
        """Causal self-attention of layer i over the prompts (prompts, len, hidden) -> (prompts, len or 1,
        hidden), as transformers' sdpa attention computes it; keys/values go to the prompt buffers."""
        from transformers.models.llama.modeling_llama import rotate_half

        attn, (prompts, length) = layer.self_attn, h.shape[:2]
        queries = slice(length - 1, length) if last else slice(0, length)
        q = attn.q_proj(h[:, queries]).view(prompts, -1, self.kv_heads * self.heads_per_kv, self.head_dim)
        k = attn.k_proj(h).view(prompts, length, self.kv_heads, self.head_dim)
        v = attn.v_proj(h).view(prompts, length, self.kv_heads, self.head_dim)
        # rotary as transformers applies it, on (prompts, len, heads, head_dim) where every operand is dense
        q = q * cos[:, queries] + rotate_half(q) * sin[:, queries]
        k = k * cos + rotate_half(k) * sin
        k_buf, v_buf = self.buffers.kv[i]
        k_buf, v_buf = k_buf[:, :, :length], v_buf[:, :, :length]
        k_buf.copy_(k.transpose(1, 2))
        v_buf.copy_(v.transpose(1, 2))
        k, v = k_buf, v_buf
        if self.heads_per_kv > 1:
            shape = (prompts, self.kv_heads * self.heads_per_kv, length, self.head_dim)
            k = k[:, :, None].expand(-1, -1, self.heads_per_kv, -1, -1).reshape(shape)
            v = v[:, :, None].expand(-1, -1, self.heads_per_kv, -1, -1).reshape(shape)
        mask = None if allowed is None else allowed[:, :, queries]
        out = torch.nn.functional.scaled_dot_product_attention(
            q.transpose(1, 2), k, v, attn_mask=mask, is_causal=mask is None and not last, scale=self.scaling)
        return attn.o_proj(out.transpose(1, 2).reshape(prompts, -1, self.kv_heads * self.heads_per_kv * self.head_dim))

    def _buffers(self, length: int, rows: int, dtype: torch.dtype, device: torch.device) -> _DecodeBuffers:
        columns = max(self.max_new_tokens - 1, 1)
        padded = self.workspace.padded_length(length) if self.workspace is not None else length
        build = lambda: _DecodeBuffers(len(self.layers), self.prompts, padded, rows, self.kv_heads,  # noqa: E731
                                       self.head_dim, columns, dtype, device)
        if self.workspace is None:
            buffers = build()
        else:
            key = ("shared_prompt", id(self.lm), self.prompts, padded, rows, columns, str(dtype), str(device))
            buffers = self.workspace.entry(key, build)
        if buffers.step is None:  # the graph replays whichever decoder captured it: same buffers
            buffers.step = CudaGraphCall(self._fixed_shape_step, enabled=self.cuda_graphs and device.type == "cuda")
        return buffers

    def _per_row(self, per_prompt: torch.Tensor) -> torch.Tensor:
        """(prompts, ...) -> (rows, ...): every beam row gets its prompt's value."""
        shape = per_prompt.shape[1:]
        expanded = per_prompt.view(1, self.prompts, 1, *shape).expand(self.groups, -1, self.group_size, *shape)
        return expanded.reshape(self.groups * self.prompts * self.group_size, *shape)

    def step(self, parent_rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """One token per beam row through every layer; next-token logits per row (valid until the next step)."""
        b = self.buffers
        # device-side counters only: writing a Python number into a CUDA tensor by indexing goes
        # through a host tensor and a blocking copy, which would make the host wait for every step
        b.write_at.fill_(self.fed)
        logits = b.step(parent_rows, tokens)
        b.positions += 1
        self.fed += 1
        return logits

    def _fixed_shape_step(self, parent_rows: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        b = self.buffers
        bias = self._follow_parents(parent_rows)
        slots = b.length + b.write_at * b.beam_ids.numel() + b.beam_ids  # column write_at of every beam
        x = self.lm.model.embed_tokens(tokens)[:, None]
        cos, sin = self.lm.model.rotary_emb(x, b.positions)
        for i, layer in enumerate(self.layers):
            x = x + self._attention(i, layer, layer.input_layernorm(x), cos, sin, slots, bias)
            x = x + self._mlp(i, layer, layer.post_attention_layernorm(x))
        return self.lm.lm_head(self.lm.model.norm(x))[:, -1]

    def _follow_parents(self, parent_rows: torch.Tensor) -> torch.Tensor:
        """Every beam inherits its parent's ancestry and sees its own new slot; returns the additive mask of
        a beam's keys, (prompts, 1, 1, beams, length + columns * beams): 0 where visible, -inf elsewhere."""
        b, g, p, s = self.buffers, self.groups, self.prompts, self.group_size
        beams, columns = g * s, b.column_ids.numel()
        # a parent row (group, prompt, beam in group) -> its beam (group * s + beam in group), laid out (prompt, beam)
        parent = ((parent_rows // (p * s)) * s + parent_rows % s).view(g, p, s).transpose(0, 1).reshape(p, beams)
        seen = b.visible.gather(1, parent[:, :, None, None].expand(-1, -1, columns, beams))
        seen |= (b.column_ids == b.write_at)[None, None, :, None] & b.own_slot[None, :, None, :]
        b.visible.copy_(seen)
        gen_bias = torch.zeros(seen.shape, dtype=b.prompt_bias.dtype, device=seen.device).masked_fill_(
            ~seen, float("-inf")).view(p, 1, 1, beams, columns * beams)
        return torch.cat([b.prompt_bias.expand(-1, -1, -1, beams, -1), gen_bias], dim=-1)

    def _attention(self, i: int, layer: nn.Module, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                   slots: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Self-attention of layer i for one new token per row: (rows, 1, hidden) -> (rows, 1, hidden)."""
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        attn, rows = layer.self_attn, h.shape[0]
        if self.fused is None:
            q, k, v = attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)
        else:
            kv_width = self.kv_heads * self.head_dim
            q, k, v = torch.nn.functional.linear(h, self.fused[i][0]).split(
                [self.fused[i][0].shape[0] - 2 * kv_width, kv_width, kv_width], dim=-1)
        q = q.reshape(rows, 1, -1, self.head_dim).transpose(1, 2)
        k = k.reshape(rows, 1, -1, self.head_dim).transpose(1, 2)
        v = v.reshape(rows, 1, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        b = self.buffers
        keys, values = b.kv[i]  # (prompts, kv_heads, length + columns * beams, head_dim)
        keys.index_copy_(2, slots, self._by_prompt(k))  # the new tokens' slots only
        values.index_copy_(2, slots, self._by_prompt(v))
        q = self._by_prompt((q * self.scaling).view(rows, self.kv_heads, self.heads_per_kv, self.head_dim))
        scores = torch.matmul(q, keys.transpose(-1, -2))  # (prompts, kv_heads, n * beams, keys): a prompt's beams
        shape = scores.shape
        scores = (scores.view(shape[0], shape[1], self.heads_per_kv, -1, shape[3]) + bias).view(shape)
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return attn.o_proj(self._by_row(torch.matmul(weights, values)).reshape(rows, 1, -1))

    def _mlp(self, i: int, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        if self.fused is None:
            return layer.mlp(h)
        gate, up = torch.nn.functional.linear(h, self.fused[i][1]).chunk(2, dim=-1)
        return layer.mlp.down_proj(layer.mlp.act_fn(gate) * up)

    def _by_prompt(self, t: torch.Tensor) -> torch.Tensor:
        """(rows, kv_heads, n, X) -> (prompts, kv_heads, n * groups * group_size, X): a prompt's beams as queries."""
        g, p, s, n = self.groups, self.prompts, self.group_size, t.shape[2]
        return t.view(g, p, s, self.kv_heads, n, -1).permute(1, 3, 4, 0, 2, 5).reshape(p, self.kv_heads, n * g * s, -1)

    def _by_row(self, t: torch.Tensor) -> torch.Tensor:
        """Inverse of _by_prompt: (prompts, kv_heads, n * groups * group_size, X) -> (rows, kv_heads, n, X)."""
        g, p, s = self.groups, self.prompts, self.group_size
        n = t.shape[2] // (g * s)
        return t.view(p, self.kv_heads, n, g, s, -1).permute(3, 0, 4, 1, 2, 5).reshape(g * p * s, self.kv_heads, n, -1)
