"""model.name_match_feature: each text token's embedding gains, along one learned direction, the highest
probability any visual token of its own sample gives that token id. Oracle: a per-token loop over the
sample's visual tokens (softmax against the input embeddings), written out here."""
import torch

import mmrag  # noqa: F401
from mmrag.models.multimodal_llm import MultimodalLLM
from mmrag.processors import build_processor
from mmrag.processors.tokenization import IMAGE_PLACEHOLDER_ID
from tests.conftest import build_tiny_model, full_llm_cfg


def _batch(model):
    processor = build_processor(model.cfg, model)
    gen = torch.Generator().manual_seed(1)
    samples = [{"conversations": [{"from": "human", "value": "<image> Is there a tree?"}, {"from": "gpt", "value": "Yes."}],
                "pixel_values": torch.randn(1, 3, 32, 32, generator=gen)},
               {"conversations": [{"from": "human", "value": "<image> Is there a rock here?"}, {"from": "gpt", "value": "No."}],
                "pixel_values": torch.randn(1, 3, 32, 32, generator=gen)}]
    return processor.collate(samples)


def _oracle(model, batch):
    table = model.llm.get_input_embeddings().weight
    visual = model.encode_images(batch["pixel_values"])  # [2, cells, width], one image a row
    ids = batch["input_ids"]
    want = torch.zeros(ids.shape, dtype=torch.float32)
    for b in range(ids.shape[0]):
        probs = torch.softmax(visual[b] @ table.t(), dim=-1)  # [cells, vocab]
        for t in range(ids.shape[1]):
            token = int(ids[b, t])
            if token != IMAGE_PLACEHOLDER_ID:
                want[b, t] = probs[:, max(token, 0)].max()
    return want


def test_off_by_default_and_zero_direction_leaves_the_embeddings(tiny_model_cfg):
    assert MultimodalLLM.DEFAULTS["name_match_feature"] is False
    plain = build_tiny_model(full_llm_cfg(tiny_model_cfg))
    matched = build_tiny_model(full_llm_cfg(tiny_model_cfg, name_match_feature=True))
    assert plain.match_direction is None and matched.match_direction.abs().sum() == 0
    batch = _batch(plain)
    assert torch.equal(plain.embed(batch["input_ids"], batch["pixel_values"]),
                       matched.embed(batch["input_ids"], batch["pixel_values"]))


def test_feature_equals_the_per_token_oracle_and_moves_text_positions_only(tiny_model_cfg):
    model = build_tiny_model(full_llm_cfg(tiny_model_cfg, name_match_feature=True))
    batch = _batch(model)
    with torch.no_grad():
        model.match_direction.copy_(torch.randn(model.match_direction.shape[0]))
        # the feature reads the visual positions, which the feature itself never changes
        feature = model.name_match(model.embed(batch["input_ids"], batch["pixel_values"]), batch["input_ids"])
    want = _oracle(model, batch)
    torch.testing.assert_close(feature.float(), want, atol=1e-5, rtol=1e-4)
    assert (feature[batch["input_ids"] == IMAGE_PLACEHOLDER_ID] == 0).all()
    # the two rows differ, so a mix-up of rows (one sample's cells read by the other) would fail above
    assert not torch.allclose(want[0, -4:], want[1, -4:])


def test_the_direction_trains_and_the_visual_tokens_get_no_gradient_through_it(tiny_model_cfg):
    model = build_tiny_model(full_llm_cfg(tiny_model_cfg, name_match_feature=True))
    batch = _batch(model)
    embeds = model.embed(batch["input_ids"], batch["pixel_values"])
    assert embeds.requires_grad and not model.name_match(embeds, batch["input_ids"]).requires_grad
    model(batch)["loss_sum"].backward()
    assert model.match_direction.grad is not None and model.match_direction.grad.abs().sum() > 0
