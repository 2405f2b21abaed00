"""model.grounding_loss_weight: the visual tokens of covered cells predict their object's name.

Oracles: the text loss from HF's own logits (as in test_multimodal_llm_loss_logits), the grounding
term recomputed here from the projector's output and the LM head / input embeddings."""
import pytest
import torch

import mmrag  # noqa: F401
from mmrag.common.errors import ConfigError
from mmrag.models.multimodal_llm import MultimodalLLM
from mmrag.processors import build_processor
from mmrag.processors.tokenization import IGNORE_INDEX as IGN, IMAGE_PLACEHOLDER_ID
from tests.conftest import build_tiny_model, full_llm_cfg


def _batch(model):
    """Two images: image 0 has cell 0 -> [5] and cell 2 -> [7, 8]; image 1 has no covered cell."""
    processor = build_processor(model.cfg, model)
    cells = model.num_visual_tokens
    assert cells >= 3
    first = torch.full((cells, 2), IGN)
    first[0, 0], first[2] = 5, torch.tensor([7, 8])
    gen = torch.Generator().manual_seed(1)
    samples = [{"conversations": [{"from": "human", "value": "<image> Is there a tree?"}, {"from": "gpt", "value": "Yes."}],
                "pixel_values": torch.randn(1, 3, 32, 32, generator=gen), "cell_targets": [first]},
               {"conversations": [{"from": "human", "value": "<image> What is it?"}, {"from": "gpt", "value": "A rock."}],
                "pixel_values": torch.randn(1, 3, 32, 32, generator=gen)}]
    return processor.collate(samples)


def _text_loss(model, batch):
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    logits = model.llm(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits[:, :-1]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                                             reduction="sum")


def _grounding_oracle(model, batch, head):
    visual = model.encode_images(batch["pixel_values"])  # [2, cells, width]
    scores = head(visual[0, [0, 2]]).log_softmax(-1)
    cell0 = -scores[0, 5]
    cell2 = -(scores[1, 7] + scores[1, 8]) / 2
    return (cell0 + cell2) / 2


def test_weight_zero_is_the_old_loss_even_with_cell_targets(tiny_model_cfg):
    model = build_tiny_model(full_llm_cfg(tiny_model_cfg))
    assert MultimodalLLM.DEFAULTS["grounding_loss_weight"] == 0.0
    batch = _batch(model)
    assert batch["cell_targets"].shape == (2, model.num_visual_tokens, 2)
    out = model(batch)
    assert torch.allclose(out["loss_sum"], _text_loss(model, batch), rtol=1e-5)
    assert "grounding_loss" not in out


@pytest.mark.parametrize("head", ["output", "input"])
def test_weighted_loss_adds_the_mean_cross_entropy_of_the_covered_cells(tiny_model_cfg, head):
    model = build_tiny_model(full_llm_cfg(tiny_model_cfg, grounding_loss_weight=0.5, grounding_head=head))
    batch = _batch(model)
    out = model(batch)
    table = model.llm.get_output_embeddings() if head == "output" else (
        lambda x: x @ model.llm.get_input_embeddings().weight.t())
    grounding = _grounding_oracle(model, batch, table)
    assert torch.allclose(out["grounding_loss"], grounding.detach(), rtol=1e-5)
    expected = _text_loss(model, batch) + 0.5 * grounding * int(out["n_tokens"])
    assert torch.allclose(out["loss_sum"], expected, rtol=1e-5)


def test_only_covered_cells_receive_a_gradient(tiny_model_cfg):
    model = build_tiny_model(full_llm_cfg(tiny_model_cfg, grounding_loss_weight=1.0))
    batch = _batch(model)
    embeds = model.embed(batch["input_ids"], batch["pixel_values"]).detach().requires_grad_(True)
    model.grounding_loss(embeds, batch["input_ids"], batch["cell_targets"]).backward()
    places = (batch["input_ids"] == IMAGE_PLACEHOLDER_ID)
    per_token = embeds.grad.abs().sum(-1)
    visual_grad = per_token[places].reshape(2, -1)
    covered = torch.zeros_like(visual_grad, dtype=torch.bool)
    covered[0, 0] = covered[0, 2] = True
    assert bool((visual_grad[covered] > 0).all())
    assert float(visual_grad[~covered].abs().max()) == 0.0
    assert float(per_token[~places].abs().max()) == 0.0   # text positions: untouched
    # a batch without any covered cell adds nothing
    none = torch.full_like(batch["cell_targets"], IGN)
    assert model.grounding_loss(embeds, batch["input_ids"], none) is None


def test_bad_grounding_keys_are_refused(tiny_model_cfg):
    with pytest.raises(ConfigError, match="model.grounding_head='pooled'"):
        build_tiny_model(full_llm_cfg(tiny_model_cfg, grounding_head="pooled"))
    with pytest.raises(ConfigError, match="model.grounding_loss_weight=-1"):
        build_tiny_model(full_llm_cfg(tiny_model_cfg, grounding_loss_weight=-1.0))
