"""Projectors and the context-module slot: token counts, config validation, splicing."""
import pytest
import torch

import mmrag  # noqa: F401
from mmrag.common.config import ConfigError, check_against_defaults
from mmrag.common.registry import CONTEXT_MODULES
from mmrag.models.context_modules import ContextModule
from mmrag.models.multimodal_llm import MultimodalLLM
from mmrag.processors import build_processor
from mmrag.processors.tokenization import CONTEXT_PLACEHOLDER_ID

# the tiny tower: 32 px images, 16 px patches -> a 2 x 2 patch grid (4 patch tokens)


@pytest.mark.parametrize("projector, select, tokens", [
    ({"type": "mlp2x_gelu"}, "patch", 4), ({"type": "linear"}, "cls_patch", 5), ({"type": "mlp_gelu", "depth": 3}, "cls", 1),
    ({"type": "pooled_mlp", "grid": 1}, "patch", 1), ({"type": "pooled_mlp", "grid": 2}, "patch", 4)])
def test_visual_token_count_comes_from_the_projector(tiny_model_cfg, tiny_model_builder, projector, select, tokens):
    cfg = {**tiny_model_cfg, "projector": projector,
           "vision_tower": {**tiny_model_cfg["vision_tower"], "select_feature": select}}
    model = tiny_model_builder(cfg)
    assert model.num_visual_tokens == tokens
    assert model.encode_images(torch.zeros(3, 3, 32, 32)).shape == (3, tokens, 48)


def test_pooled_projector_averages_grid_cells():
    from mmrag.models.projectors import PooledMLPProjector

    proj = PooledMLPProjector({"grid": 1, "depth": 1}, 2, 2, input_grid=2)
    with torch.no_grad():
        proj[0].weight.copy_(torch.eye(2)), proj[0].bias.zero_()
    feats = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 6.0]]])
    assert proj(feats).tolist() == [[[4.0, 3.0]]]


def test_pooled_grid_larger_than_the_patch_grid_is_refused(tiny_model_cfg, tiny_model_builder):
    with pytest.raises(ConfigError, match=r"model.projector.grid=4 .*patch grid is 2x2"):
        tiny_model_builder({**tiny_model_cfg, "projector": {"type": "pooled_mlp", "grid": 4}})


def test_projector_config_is_validated_per_type(tiny_model_cfg):
    user = {**tiny_model_cfg, "projector": {"type": "pooled_mlp", "gird": 2}}
    with pytest.raises(ConfigError, match="unknown config key 'model.projector.gird'; closest valid key: 'grid'"):
        check_against_defaults({"model": user}, {"model": MultimodalLLM.default_config(user)}, "", None)
    with pytest.raises(ConfigError, match=r"model.projector must be a mapping like \{type: mlp2x_gelu\}"):
        MultimodalLLM.default_config({**tiny_model_cfg, "projector": "mlp2x_gelu"})


@CONTEXT_MODULES.register("test_mean_examples")
class MeanOfExamples(ContextModule):
    """Test double: one token per sample = mean of its examples' first visual token and text embeddings."""

    fixed_tokens = 1

    def forward(self, inputs):
        out, i, t = [], 0, 0
        for n_img, n_txt in zip(inputs.image_counts, inputs.text_counts):
            img = inputs.image_tokens[i:i + n_img, 0]
            mask = inputs.text_mask[t:t + n_txt].unsqueeze(-1).to(img.dtype)
            txt = (inputs.text_embeds[t:t + n_txt] * mask).sum(1) / mask.sum(1)
            out.append(torch.cat([img, txt]).mean(0, keepdim=True))
            i, t = i + n_img, t + n_txt
        return out


def test_context_module_slot_receives_examples_and_fills_context_positions(tiny_model_cfg, tiny_model_builder):
    default = tiny_model_builder(tiny_model_cfg)
    assert default.context_module is None and default.cfg.context_module.type == "none"
    model = tiny_model_builder({**tiny_model_cfg, "context_module": {"type": "test_mean_examples"}})
    proc = build_processor(model.cfg, model)
    pixels = torch.randn(2, 3, 32, 32)
    sample = {"conversations": [{"from": "human", "value": "<context> <image> What?"}],
              "pixel_values": pixels[:1], "context": {"pixel_values": pixels, "texts": ["a red cat", "a dog"]}}
    batch = proc.collate([sample], generation=True)
    ids = batch["input_ids"]
    assert int((ids == CONTEXT_PLACEHOLDER_ID).sum()) == 1
    embeds = model.embed(ids, batch["pixel_values"], context=batch["context"])
    # oracle: the mean, written here, of both images' first visual token and both texts' mean embeddings
    with torch.no_grad():
        table = model.llm.get_input_embeddings()
        texts = [table(torch.tensor(proc.tokenizer(t, add_special_tokens=False)["input_ids"])).mean(0)
                 for t in ["a red cat", "a dog"]]
        expected = torch.stack([*model.encode_images(pixels)[:, 0], *texts]).mean(0)
    assert torch.allclose(embeds[0][ids[0] == CONTEXT_PLACEHOLDER_ID][0], expected, atol=1e-5)
