"""The shared-prompt beam decoder gives the logits of the model's own KV-cache decoding (the oracle),
for grouped-query attention, left padding and LoRA-wrapped models; `auto` falls back where it must."""
from __future__ import annotations

import contextlib

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from mmrag.retrieval.beam_decoders import (BeamGraphWorkspace, HFCacheDecoder, SharedPromptDecoder,
                                           make_beam_decoder, supports_shared_prompt)
from mmrag.retrieval.group_beam_search import group_beam_search

GROUPS, GROUP_SIZE, PROMPTS, STEPS = 3, 2, 3, 4
ROWS = GROUPS * PROMPTS * GROUP_SIZE


def tiny_llama(kv_heads: int = 2, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def padded_prompts(lengths=(5, 2, 4), hidden: int = 32):
    torch.manual_seed(3)
    longest = max(lengths)
    mask = torch.zeros(len(lengths), longest, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, longest - length:] = 1
    return torch.randn(len(lengths), longest, hidden), mask


def row_prompt() -> torch.Tensor:
    return torch.arange(PROMPTS).view(1, -1, 1).expand(GROUPS, -1, GROUP_SIZE).reshape(-1)


def random_parents(gen: torch.Generator) -> torch.Tensor:
    """A parent row for every row, drawn from the beams of the same (group, prompt) block."""
    block = torch.arange(GROUPS * PROMPTS).repeat_interleave(GROUP_SIZE)
    return block * GROUP_SIZE + torch.randint(0, GROUP_SIZE, (ROWS,), generator=gen)


@pytest.mark.parametrize("kv_heads,padded,fused", [(4, False, False), (2, True, False), (1, True, False),
                                                   (2, True, True), (4, False, True)])
def test_shared_prompt_logits_equal_the_kv_cache_decoder(kv_heads, padded, fused):
    model = tiny_llama(kv_heads)
    embeds, mask = padded_prompts()
    mask = mask if padded else None
    oracle = HFCacheDecoder(model, row_prompt(), STEPS + 1)
    shared = SharedPromptDecoder(model, GROUPS, GROUP_SIZE, STEPS + 1, fused=fused)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        expected, got = oracle.prefill(embeds, mask), shared.prefill(embeds, mask)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
        for _ in range(STEPS):
            parents, tokens = random_parents(gen), torch.randint(3, 97, (ROWS,), generator=gen)
            torch.testing.assert_close(shared.step(parents, tokens), oracle.step(parents, tokens),
                                       rtol=1e-5, atol=1e-5)


class CacheTraffic(TorchDispatchMode):
    """Per op: elements written into, and non-view reads of, the decoder's key/value buffers."""

    def __init__(self, buffers) -> None:
        super().__init__()
        caches = [t for pair in buffers.kv for t in pair]
        self.storages = {t.untyped_storage().data_ptr() for t in caches}
        self.written, self.readers, self.ops = 0, set(), set()

    def _cache(self, t) -> bool:
        return isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() in self.storages

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        self.ops.add(name)
        if name.endswith("_") and self._cache(args[0]):  # in place into a cache: count what lands there
            self.written += args[3].numel() if name == "index_copy_" else args[0].numel()
        elif any(self._cache(a) for a in args) and not self._cache(out):  # not a view: the op reads the cache
            self.readers.add(name)
        return out


def test_a_decode_step_writes_the_new_tokens_keys_and_values_and_moves_no_cache():
    """Per step the caches take exactly one key and one value per beam row and layer; only the attention
    matmuls read them (no gather by parent row, no copy of the prompt part), and no Python number is
    written into a device tensor (on a GPU that is a host tensor copied with a blocking copy)."""
    model, kv_heads, layers, head_dim = tiny_llama(kv_heads=2), 2, 2, 8
    embeds, mask = padded_prompts()
    decoder = SharedPromptDecoder(model, GROUPS, GROUP_SIZE, STEPS + 1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        decoder.prefill(embeds, mask)
        for _ in range(STEPS):
            parents, tokens = random_parents(gen), torch.randint(3, 97, (ROWS,), generator=gen)
            with CacheTraffic(decoder.buffers) as traffic:
                decoder.step(parents, tokens)
            assert traffic.written == 2 * layers * ROWS * kv_heads * head_dim
            assert traffic.readers == {"bmm"}
            assert "lift_fresh" not in traffic.ops


def test_the_prefill_writes_each_prompt_key_and_value_once_and_finishes_on_the_last_position():
    model, kv_heads, layers, head_dim = tiny_llama(kv_heads=2), 2, 2, 8
    embeds, mask = padded_prompts()
    workspace = BeamGraphWorkspace(length_multiple=8)  # the second prefill writes into the first one's buffers
    decoder = SharedPromptDecoder(model, GROUPS, GROUP_SIZE, STEPS + 1, workspace=workspace)
    last_mlp_rows = []
    model.model.layers[-1].mlp.register_forward_pre_hook(lambda m, args: last_mlp_rows.append(args[0].shape[:2]))
    with torch.no_grad():
        decoder.prefill(embeds, mask)
        with CacheTraffic(decoder.buffers) as traffic:
            decoder.prefill(embeds, mask)
    assert traffic.written == 2 * layers * PROMPTS * kv_heads * embeds.shape[1] * head_dim
    assert last_mlp_rows[-1] == (PROMPTS, 1)  # not (PROMPTS, prompt length): only the last position is read


def test_shared_prompt_runs_the_lora_layers_of_a_peft_model():
    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    for name, p in model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero, which would make the adapter invisible
            torch.nn.init.normal_(p, std=0.5)
    embeds, mask = padded_prompts()
    gen = torch.Generator().manual_seed(1)
    parents, tokens = random_parents(gen), torch.randint(3, 97, (ROWS,), generator=gen)
    outputs = {}
    with torch.no_grad():
        for adapters in (True, False):
            for kind in ("hf_cache", "shared_prompt"):
                decoder = make_beam_decoder(kind, model, row_prompt(), GROUPS, GROUP_SIZE, 3)
                with (model.disable_adapter() if not adapters else contextlib.nullcontext()):
                    decoder.prefill(embeds, mask)
                    outputs[adapters, kind] = decoder.step(parents, tokens)
    torch.testing.assert_close(outputs[True, "shared_prompt"], outputs[True, "hf_cache"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs[False, "shared_prompt"], outputs[False, "hf_cache"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(outputs[True, "shared_prompt"], outputs[False, "shared_prompt"], atol=1e-3)


def test_auto_falls_back_to_the_kv_cache_for_other_architectures():
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=64)).eval()
    assert supports_shared_prompt(tiny_llama()) and not supports_shared_prompt(gpt2)
    assert isinstance(make_beam_decoder("auto", gpt2, row_prompt(), GROUPS, GROUP_SIZE, 3), HFCacheDecoder)
    assert isinstance(make_beam_decoder("auto", tiny_llama(), row_prompt(), GROUPS, GROUP_SIZE, 3),
                      SharedPromptDecoder)
    with pytest.raises(ValueError, match="'gpt2'"):
        make_beam_decoder("shared_prompt", gpt2, row_prompt(), GROUPS, GROUP_SIZE, 3)
    with pytest.raises(ValueError, match="expected one of auto, hf_cache, shared_prompt"):
        make_beam_decoder("static", gpt2, row_prompt(), GROUPS, GROUP_SIZE, 3)
    embeds, _ = padded_prompts()
    clues = group_beam_search(gpt2, embeds, lambda tokens, scores: scores, eos_token_id=2, num_beams=4,
                              num_beam_groups=2, max_new_tokens=3)
    assert [len(c) for c in clues] == [4, 4, 4]


def search_twice(model, device: str, **options):
    """Two batches of different prompt lengths through one search configuration."""
    results = []
    for lengths in [(5, 2, 4), (3, 6, 1)]:
        embeds, mask = padded_prompts(lengths)
        results += group_beam_search(model, embeds.to(device), lambda t, s: s, eos_token_id=2, num_beams=6,
                                     num_beam_groups=3, max_new_tokens=6, attention_mask=mask.to(device), **options)
    return results


def assert_same_results(got, expected, atol: float) -> None:
    for a, b in zip(got, expected, strict=True):
        assert [c.tokens for c in a] == [c.tokens for c in b]
        torch.testing.assert_close([c.score for c in a], [c.score for c in b], rtol=0, atol=atol)


def test_a_workspace_pads_prompts_and_is_reused_across_batches():
    model = tiny_llama()
    workspace = BeamGraphWorkspace(length_multiple=8)  # both batches (6 and 5 columns) pad to 8
    with_workspace = search_twice(model, "cpu", workspace=workspace)
    assert len(workspace) == 2  # one decoder entry, one selection entry, shared by both batches
    assert_same_results(with_workspace, search_twice(model, "cpu"), atol=1e-5)
    with pytest.raises(ValueError, match="length_multiple"):
        BeamGraphWorkspace(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graph_replay_gives_the_eager_search_results():
    model = tiny_llama().cuda()
    eager = search_twice(model, "cuda", cuda_graphs=False)
    assert_same_results(search_twice(model, "cuda", cuda_graphs=True), eager, atol=1e-4)
    workspace = BeamGraphWorkspace()
    assert_same_results(search_twice(model, "cuda", workspace=workspace), eager, atol=1e-4)
    assert len(workspace) == 2


def test_fused_decoder_refuses_lora_layers():
    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with pytest.raises(ValueError, match="shared_prompt_fused"):
        make_beam_decoder("shared_prompt_fused", model, row_prompt(), GROUPS, GROUP_SIZE, 3)
