"""bench_generation.py: the token counter counts a generate call's new non-padding tokens; a toy run times
every system through LocalChatModel in batches of --batch-size."""
import math

import pytest
import torch

from bench import bench_generation


class _Model:
    def generate(self, input_ids, attention_mask=None, max_new_tokens=3, **kwargs):
        new = torch.tensor([[5, 6, 0], [7, 0, 0]])  # row 1 ended after one token, then padding (id 0)
        return torch.cat([input_ids, new], dim=1)


class _Tokenizer:
    pad_token_id = 0


class _Backend:
    model, tokenizer = _Model(), _Tokenizer()


def test_token_counter_counts_new_tokens_before_padding():
    backend = _Backend()
    counter = bench_generation.TokenCounter(backend)
    out = backend.model.generate(input_ids=torch.ones(2, 4, dtype=torch.long), max_new_tokens=3)
    assert out.shape == (2, 7)
    assert (counter.new_tokens, counter.calls, counter.prompt_tokens) == (3, 1, 8)


def test_toy_run_every_system():
    result = bench_generation.main(["--toy", "--items", "6", "--batch-size", "4", "--lrv-items", "2"])
    systems = result["systems"]
    assert set(systems) == {"data_engine", "lrv", "gavie_free", "gavie_expected"}
    assert systems["data_engine"]["generate_calls"] == math.ceil(6 / 4)
    assert systems["data_engine"]["new_tokens"] <= 6 * systems["data_engine"]["max_tokens"]
    assert systems["lrv"]["items"] == 2 and systems["lrv"]["generate_calls"] == 1
    assert systems["gavie_expected"]["generate_calls"] == 0  # one forward pass, no generation
    for fig in systems.values():  # seconds are rounded to 1 ms: the rate lies between the two ends of that
        low, high = fig["items"] / (fig["seconds"] + 0.0005), fig["items"] / max(fig["seconds"] - 0.0005, 1e-9)
        assert low - 0.005 <= fig["items_per_s"] <= high + 0.005
    assert result["model"]["weights"] == "random" and result["model"]["tokenizer"] == "made"
