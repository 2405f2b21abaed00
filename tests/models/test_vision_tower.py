import pytest
import torch

from mmrag.models.vision_tower import build_vision_tower
from mmrag.common.registry import VISION_TOWERS
import mmrag  # noqa: F401

TOWERS = {
    "hf_clip": {"config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "image_size": 32, "patch_size": 16}},
    "open_clip": {"config": {"embed_dim": 16,
                             "vision_cfg": {"image_size": 32, "patch_size": 16, "width": 32, "layers": 2, "head_width": 16},
                             "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16, "heads": 2, "layers": 1}}},
    "timm": {"model_name": "vit_tiny_patch16_224", "kwargs": {"img_size": 32, "depth": 2}},
}


@pytest.mark.parametrize("kind", sorted(TOWERS))
@pytest.mark.parametrize("feature", ["patch", "cls_patch", "cls"])
def test_towers_select_layer_and_feature(kind, feature):
    cfg = {**VISION_TOWERS.get(kind).default_config(), **TOWERS[kind], "select_feature": feature, "select_layer": -2}
    tower = build_vision_tower(cfg)
    out = tower(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, tower.num_tokens, tower.hidden_size)
    assert tower.num_tokens == {"patch": 4, "cls_patch": 5, "cls": 1}[feature]
    assert not any(p.requires_grad for p in tower.parameters())  # frozen by default


def test_select_layer_picks_that_block_output():
    cfg = {**VISION_TOWERS.get("hf_clip").default_config(), **TOWERS["hf_clip"], "select_feature": "cls_patch"}
    x = torch.randn(1, 3, 32, 32)
    last = build_vision_tower({**cfg, "select_layer": -1})
    torch.manual_seed(0)
    states = last.model(pixel_values=x, output_hidden_states=True).hidden_states
    assert torch.allclose(last(x), states[-1])
    last.select_layer = -2
    assert torch.allclose(last(x), states[-2])
