"""An open_clip ViT rewritten as a CLIPVisionModel computes the same block outputs (the open_clip
model itself is the oracle); towers it cannot represent are refused by name."""
import pytest
import torch

from mmrag.common.errors import ConfigError
from mmrag.models.clip_conversion import convert_open_clip_folder, convert_open_clip_vision
from tests.helpers.tiny_gemkr_seeing import tiny_open_clip


def _open_clip_blocks(visual, pixels):
    out = visual.forward_intermediates(pixels, indices=len(visual.transformer.resblocks), output_fmt="NLC",
                                       output_extra_tokens=True, intermediates_only=True)
    return [torch.cat([p, t], 1) for p, t in zip(out["image_intermediates_prefix"], out["image_intermediates"])]


def test_converted_tower_gives_open_clips_block_outputs_and_loads_as_an_hf_clip_tower(tmp_path):
    import json

    from mmrag.models.clip import load_open_clip
    from mmrag.models.vision_tower import build_vision_tower

    tiny_open_clip(tmp_path / "clip")
    arch = json.loads((tmp_path / "clip/open_clip_config.json").read_text())["model_cfg"]
    visual = load_open_clip(arch=arch, weights=tmp_path / "clip/open_clip_model.safetensors").visual
    folder = convert_open_clip_folder(tmp_path / "clip", tmp_path / "hf")
    tower = build_vision_tower({"type": "hf_clip", "path": str(folder), "select_layer": -1, "select_feature": "cls_patch",
                                "freeze": True, "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "config": {}})
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = _open_clip_blocks(visual, pixels)
        got = tower.hidden_states(pixels)
    assert len(got) == len(expected) == 2
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert (tower.hidden_size, tower.image_size, tower.patch_size, len(tower.blocks)) == (32, 32, 8, 2)


def test_layer_scale_and_quick_gelu_towers_are_refused():
    import open_clip

    vision = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16}
    text = {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1}
    scaled = open_clip.CLIP(16, {**vision, "ls_init_value": 0.1}, text)
    with pytest.raises(ConfigError, match="layer scale"):
        convert_open_clip_vision(scaled.visual, "unused")
    quick = open_clip.CLIP(16, vision, text, quick_gelu=True)
    with pytest.raises(ConfigError, match="GELU"):
        convert_open_clip_vision(quick.visual, "unused")
