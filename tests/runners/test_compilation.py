"""torch.compile of the training forward: same loss and gradients as eager, the documented modules per
scope, the runner's `run.compile` option validated and applied. Two tiny compiles (CPU, ~10-20 s each)."""
import copy

import pytest
import torch
from torch._dynamo.utils import counters

from mmrag.common.config import ConfigError
from mmrag.processors import build_processor
from mmrag.runners.compilation import (CompileOptionError, compile_model, compile_stats, inductor_options,
                                       uncompile_model)
from tests.runners.toy_task import train


def _samples(n: int = 2):
    gen = torch.Generator().manual_seed(0)
    # answers of different lengths: the batch is padded, so the decoder gets a real attention mask
    return [{"conversations": [{"from": "human", "value": "<image>\nWhich colour is this?"},
                               {"from": "gpt", "value": "It is red." + " Quite so." * i}],
             "pixel_values": torch.randn(1, 3, 32, 32, generator=gen)} for i in range(n)]


def _loss_and_grads(model, batch):
    out = model(batch)
    loss = out["loss_sum"] / out["n_tokens"]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return float(loss.detach()), grads


def test_compiled_llm_gives_the_eager_loss_and_gradients(tiny_model_cfg, tiny_model_builder):
    model = tiny_model_builder(tiny_model_cfg).train()
    batch = build_processor(model.cfg, model).collate(_samples())
    assert batch["attention_mask"].min() == 0  # padding present
    eager_loss, eager_grads = _loss_and_grads(model, batch)
    counters.clear()
    assert compile_model(model, "llm") == ["llm.base_model.model.model"]
    loss, grads = _loss_and_grads(model, batch)
    stats = compile_stats()
    assert stats["unique_graphs"] == 1 and stats["graph_breaks"] == 0  # the whole decoder in one graph
    assert loss == pytest.approx(eager_loss, rel=1e-5)
    assert grads.keys() == eager_grads.keys() and any("lora_" in n for n in grads)
    for name, grad in grads.items():
        scale = eager_grads[name].abs().max().item() + 1e-12
        assert (grad - eager_grads[name]).abs().max().item() <= 1e-4 * scale, name
    assert uncompile_model(model) == 1
    assert _loss_and_grads(model, batch)[0] == pytest.approx(eager_loss, rel=1e-6)


def test_scopes_compile_the_documented_modules(tiny_model_cfg, tiny_model_builder):
    cfg = copy.deepcopy(tiny_model_cfg)
    cfg["region_prefix"] = {"enabled": True, "layers": 1}
    model = tiny_model_builder(cfg)
    n_layers = model.llm.get_base_model().config.num_hidden_layers
    # compilation is lazy: nothing runs here, so every scope is cheap to check
    layers = compile_model(model, "layers")
    assert layers == [f"llm.base_model.model.model.layers.{i}" for i in range(n_layers)]
    assert uncompile_model(model) == n_layers
    assert compile_model(model, "model") == ["llm.base_model.model.model", "region_prefix", "projector"]
    assert uncompile_model(model) == 3
    assert compile_model(model, "none") == [] and uncompile_model(model) == 0
    # the training forward builds no KV cache once compiled; generation passes use_cache itself
    assert model.llm.get_base_model().config.use_cache is False


def test_unknown_scope_mode_or_flag_is_refused(tiny_model):
    with pytest.raises(CompileOptionError, match="compile scope 'everything' is not one of none, layers"):
        compile_model(tiny_model, "everything")
    with pytest.raises(CompileOptionError, match="compile mode 'fastest'"):
        compile_model(tiny_model, "llm", mode="fastest")
    with pytest.raises(CompileOptionError, match="inductor flag 'no_such_flag'"):
        inductor_options("default", ["no_such_flag"])
    with pytest.raises(CompileOptionError, match="max_autotune_gemm_backends"):  # a string option, not a flag
        inductor_options("default", ["max_autotune_gemm_backends"])
    # the mode's own options stay under extra flags (torch.compile takes a mode or options, not both)
    assert inductor_options("reduce-overhead", ["coordinate_descent_tuning"]) == (
        None, {"triton.cudagraphs": True, "coordinate_descent_tuning": True})
    assert inductor_options("max-autotune-no-cudagraphs") == ("max-autotune-no-cudagraphs", None)


def test_runner_refuses_an_unknown_compile_value(tiny_model_cfg, tmp_path):
    with pytest.raises(ConfigError, match="run.compile='decoder' is not one of none, layers, llm, model"):
        train(tiny_model_cfg, tmp_path / "run", tmp_path / "img", max_steps=1, compile="decoder")


def test_runner_compiled_training_matches_eager(tiny_model_cfg, tmp_path):
    eager = train(tiny_model_cfg, tmp_path / "eager", tmp_path / "img", max_steps=2)
    counters.clear()
    compiled = train(tiny_model_cfg, tmp_path / "compiled", tmp_path / "img", max_steps=2, compile="llm")
    assert compile_stats()["unique_graphs"] >= 1  # the runner did compile
    assert [h["loss"] for h in compiled["history"]] == pytest.approx([h["loss"] for h in eager["history"]], rel=1e-5)
    # compiled decoder layers under FSDP2 (a process group of one: the same sharding hooks run)
    counters.clear()
    fsdp = train(tiny_model_cfg, tmp_path / "fsdp", tmp_path / "img", max_steps=2, compile="layers", distributed="fsdp")
    assert compile_stats()["unique_graphs"] >= 1
    assert [h["loss"] for h in fsdp["history"]] == pytest.approx([h["loss"] for h in eager["history"]], rel=1e-5)
