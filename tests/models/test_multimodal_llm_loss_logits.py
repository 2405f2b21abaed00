"""model.loss_logits: the LM head at target positions only gives the loss and gradients of full logits."""
import copy

import pytest
import torch
from omegaconf import OmegaConf

import mmrag  # noqa: F401
from mmrag.common.errors import ConfigError
from mmrag.models.multimodal_llm import MultimodalLLM
from mmrag.processors import build_processor
from mmrag.processors.tokenization import IGNORE_INDEX


def _build(model_cfg, loss_logits):
    cfg = {**copy.deepcopy(model_cfg), "loss_logits": loss_logits}
    torch.manual_seed(0)
    return MultimodalLLM(OmegaConf.merge(MultimodalLLM.default_config(cfg), cfg))


def _batch(processor):
    samples = [{"conversations": [{"from": "human", "value": "<image> What is shown?"},
                                  {"from": "gpt", "value": "A red square and a blue circle."}],
                "pixel_values": torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))},
               {"conversations": [{"from": "human", "value": "Anything?"}, {"from": "gpt", "value": "No."}],
                "pixel_values": torch.zeros(0, 3, 32, 32)}]
    return processor.collate(samples)  # rows of different length: padding and a mask


def test_target_only_loss_and_gradients_equal_full_logits(tiny_model_cfg):
    targets, full = _build(tiny_model_cfg, "targets"), _build(tiny_model_cfg, "all")
    batch = _batch(build_processor(targets.cfg, targets))
    assert bool((batch["attention_mask"] == 0).any())
    out_t, out_f = targets(batch), full(batch)
    assert int(out_t["n_tokens"]) == int(out_f["n_tokens"]) == int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    # oracle independent of both paths: HF's own logits, cross-entropy summed over the shifted labels
    embeds = full.embed(batch["input_ids"], batch["pixel_values"])
    logits = full.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits[:, :-1]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 batch["labels"][:, 1:].reshape(-1), reduction="sum")
    assert torch.allclose(out_f["loss_sum"], expected, rtol=1e-5)
    assert torch.allclose(out_t["loss_sum"], out_f["loss_sum"], rtol=1e-5)
    out_t["loss_sum"].backward()
    out_f["loss_sum"].backward()
    grads_t = {n: p.grad for n, p in targets.named_parameters() if p.requires_grad}
    grads_f = {n: p.grad for n, p in full.named_parameters() if p.requires_grad}
    assert grads_t.keys() == grads_f.keys() and len(grads_t) > 0
    for name in grads_t:
        assert torch.allclose(grads_t[name], grads_f[name], rtol=1e-4, atol=1e-6), name


def test_default_is_target_only_and_unknown_value_is_refused(tiny_model_cfg):
    assert MultimodalLLM.DEFAULTS["loss_logits"] == "targets"
    with pytest.raises(ConfigError, match="model.loss_logits='some'"):
        _build(tiny_model_cfg, "some")
