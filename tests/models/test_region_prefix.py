import pytest
import torch

from mmrag.common.registry import VISION_TOWERS
from mmrag.models.region_prefix import RegionPrefixEncoder
from mmrag.models.vision_tower import build_vision_tower

TOWER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
         "image_size": 32, "patch_size": 8}


@pytest.fixture(scope="module")
def tower():
    torch.manual_seed(0)
    return build_vision_tower({**VISION_TOWERS.get("hf_clip").default_config(), "config": TOWER,
                               "select_layer": -1, "select_feature": "cls_patch"})


def test_zero_gate_leaves_the_tower_output_unchanged(tower):
    enc = RegionPrefixEncoder(tower, layers=2, prefix_len=5, num_output_tokens=2)
    x, regions = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32)
    out = enc(x, regions)
    plain = tower(x)  # last block output, CLS first
    assert out.shape == (2, 3, 32)
    assert torch.allclose(out[:, 0], plain[:, 0], atol=1e-5)


def test_nonzero_gate_lets_regions_change_the_image_tokens(tower):
    enc = RegionPrefixEncoder(tower, layers=2, prefix_len=5, num_output_tokens=2)
    with torch.no_grad():
        enc.gate.fill_(1.0)
    x = torch.randn(1, 3, 32, 32)
    a, b = enc(x, torch.zeros(1, 3, 32)), enc(x, torch.randn(1, 3, 32))
    assert not torch.allclose(a[:, 0], b[:, 0])
    assert not torch.allclose(a[:, 0], tower(x)[:, 0])


def test_prefix_and_gate_are_trainable_and_get_gradients(tower):
    enc = RegionPrefixEncoder(tower, layers=2, prefix_len=5, num_output_tokens=2)
    enc(torch.randn(2, 3, 32, 32), torch.randn(2, 5, 32)).sum().backward()
    assert enc.gate.grad is not None and enc.gate.grad.abs().sum() > 0
    assert enc.prefix.grad.abs().sum() > 0
    assert all(p.grad is None for p in tower.parameters())  # the tower stays frozen


def test_bad_settings_are_reported(tower):
    with pytest.raises(ValueError, match="layers=9 must be in 1..3"):
        RegionPrefixEncoder(tower, layers=9, prefix_len=5, num_output_tokens=2)
    with pytest.raises(ValueError, match="exceeds prefix_len"):
        RegionPrefixEncoder(tower, layers=1, prefix_len=2, num_output_tokens=3)
