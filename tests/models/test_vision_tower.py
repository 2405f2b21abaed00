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


# ---------------------------------------------------------------- timm CNN towers (EfficientNet-Lite0)
def _cnn_cfg(**changes):
    """Random-initialised tf_efficientnet_lite0 (the architecture of the prepared asset)."""
    return {**VISION_TOWERS.get("timm").default_config(), "model_name": "tf_efficientnet_lite0",
            "select_feature": "patch", "image_mean": [0.5] * 3, "image_std": [0.5] * 3, **changes}


# by hand: TF 'same' padding gives a map side of ceil(size / stride); head = the stride-32 map after
# the 1x1 head conv (1280 channels), stride16 = the 112-channel stage
@pytest.mark.parametrize("size, feature_map, side, width", [
    (160, "head", 5, 1280), (160, "stride16", 10, 112), (96, "head", 3, 1280), (96, "stride16", 6, 112),
    (100, "stride32", 4, 320)])
def test_cnn_tower_gives_one_token_per_map_cell(size, feature_map, side, width):
    tower = build_vision_tower(_cnn_cfg(image_size=size, feature_map=feature_map))
    out = tower(torch.randn(2, 3, size, size))
    assert (tower.grid, tower.num_tokens, tower.hidden_size) == (side, side * side, width)
    assert out.shape == (2, side * side, width)


def test_cnn_tokens_are_the_map_cells_row_by_row():
    tower = build_vision_tower(_cnn_cfg(image_size=64, feature_map="stride16"))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        fmap = tower.model.forward_intermediates(x, indices=[3], intermediates_only=True)[0]  # [1, 112, 4, 4]
        tokens = tower(x)
    assert torch.equal(tokens[0, 1 * 4 + 2], fmap[0, :, 1, 2])  # row 1, column 2 -> token 6


def test_cnn_head_tokens_average_to_timms_own_pooled_features():
    """Independent oracle: timm's classifier-less forward (global average pool of the head map)."""
    import timm
    from pathlib import Path

    weights = Path(__file__).resolve().parents[2] / "assets" / "efficientnet_lite0" / "model.safetensors"
    if not weights.is_file():
        pytest.skip("assets/efficientnet_lite0 not prepared (mmrag-prepare-assets efficientnet_lite0)")
    tower = build_vision_tower(_cnn_cfg(image_size=160, path=str(weights)))
    reference = timm.create_model("tf_efficientnet_lite0", num_classes=0, pretrained=True,
                                  pretrained_cfg_overlay={"file": str(weights)}).eval()
    x = torch.randn(2, 3, 160, 160, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(tower(x).mean(dim=1), reference(x), atol=1e-5)


@pytest.mark.parametrize("changes, key", [({"feature_map": "stride7"}, "model.vision_tower.feature_map"),
                                          ({"select_feature": "cls"}, "model.vision_tower.select_feature")])
def test_cnn_tower_refuses_what_it_does_not_have(changes, key):
    from mmrag.common.errors import ConfigError

    with pytest.raises(ConfigError, match=key):
        build_vision_tower(_cnn_cfg(image_size=64, **changes))


@pytest.mark.parametrize("size, grid, tokens", [(160, 4, 16), (160, 5, 25), (96, 2, 4)])
def test_pooled_projector_on_a_cnn_grid(tiny_model_builder, size, grid, tokens):
    cfg = {"vision_tower": _cnn_cfg(image_size=size), "projector": {"type": "pooled_mlp", "grid": grid},
           "llm": {"config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                              "num_attention_heads": 2, "num_key_value_heads": 2}}, "lora": {"enabled": False}}
    model = tiny_model_builder(cfg)
    assert model.num_visual_tokens == tokens
    assert model.encode_images(torch.zeros(1, 3, size, size)).shape == (1, tokens, 32)


def test_more_visual_tokens_than_the_cnn_grid_is_refused_at_build(tiny_model_builder):
    from mmrag.common.errors import ConfigError

    cfg = {"vision_tower": _cnn_cfg(image_size=160), "projector": {"type": "pooled_mlp", "grid": 6},
           "llm": {"config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                              "num_attention_heads": 2, "num_key_value_heads": 2}}, "lora": {"enabled": False}}
    with pytest.raises(ConfigError, match=r"model.projector.grid=6 .*grid is 5x5"):  # 160 / 32 = 5
        tiny_model_builder(cfg)


def test_feature_cache_computes_each_image_once_and_is_shared_on_disk(tmp_path):
    cfg = _cnn_cfg(image_size=64, feature_cache=str(tmp_path / "cache"))
    torch.manual_seed(0)
    tower = build_vision_tower(cfg)
    x = torch.randn(3, 3, 64, 64)
    plain = tower._cnn_tokens(x)
    first = tower(x[[0, 1]])
    again = tower(x)   # images 0 and 1 read, image 2 computed
    assert (tower.cache.misses, tower.cache.hits) == (3, 2)
    # a conv's last bits depend on the batch size: read-back features equal the first computation exactly
    assert torch.equal(again[:2], first) and torch.allclose(again, plain, atol=1e-5)
    torch.manual_seed(0)
    other = build_vision_tower(cfg)   # same weights (same seed): reads the files the first one wrote
    assert torch.equal(other(x), again) and (other.cache.misses, other.cache.hits) == (0, 3)
    torch.manual_seed(1)
    changed = build_vision_tower(cfg)  # other weights: another cache folder, nothing read
    changed(x)
    assert changed.cache.hits == 0 and len(list((tmp_path / "cache").iterdir())) == 2


def test_feature_cache_needs_a_frozen_tower(tmp_path):
    from mmrag.common.errors import ConfigError

    with pytest.raises(ConfigError, match="model.vision_tower.feature_cache"):
        build_vision_tower(_cnn_cfg(image_size=64, freeze=False, feature_cache=str(tmp_path)))


def test_cnn_only_keys_are_refused_on_a_vit():
    from mmrag.common.errors import ConfigError

    cfg = {**VISION_TOWERS.get("timm").default_config(), **TOWERS["timm"], "image_size": 64}
    with pytest.raises(ConfigError, match="model.vision_tower.image_size is for CNN towers"):
        build_vision_tower(cfg)
