"""Feature-cache keys computed by the processor (a batch's image_keys): same keys as the tower's own,
and a batch whose images are all cached is looked up without reading its pixels."""
import hashlib

import numpy as np
import torch

import mmrag  # noqa: F401
from mmrag.common.registry import VISION_TOWERS
from mmrag.processors import build_processor


def _model_cfg(cache_dir):
    tower = {**VISION_TOWERS.get("timm").default_config(), "model_name": "tf_efficientnet_lite0",
             "select_feature": "patch", "image_mean": [0.5] * 3, "image_std": [0.5] * 3, "image_size": 64,
             "feature_cache": str(cache_dir)}
    return {"vision_tower": tower, "projector": {"type": "mlp_gelu", "depth": 2},
            "llm": {"config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                               "num_attention_heads": 2, "num_key_value_heads": 2}}, "lora": {"enabled": False}}


def _samples(n):
    gen = torch.Generator().manual_seed(0)
    return [{"conversations": [{"from": "human", "value": "<image> What is it?"}, {"from": "gpt", "value": "A cube."}],
             "pixel_values": torch.randn(1, 3, 64, 64, generator=gen)} for _ in range(n)]


def test_batch_keys_are_sha1_of_float32_pixels_and_cached_batches_skip_the_pixels(tiny_model_builder, tmp_path):
    model = tiny_model_builder(_model_cfg(tmp_path / "cache"))
    processor = build_processor(model.cfg, model)
    batch = processor.collate(_samples(3))
    # oracle: hashlib over the float32 bytes, row by row
    expected = [hashlib.sha1(np.ascontiguousarray(p.numpy(), dtype=np.float32).tobytes()).hexdigest()
                for p in batch["pixel_values"]]
    assert batch["image_keys"] == expected
    cache = model.vision_tower.cache
    assert cache.lookup(batch["image_keys"]) is None  # nothing cached yet
    first = model(batch)["loss_sum"]                  # computes and caches all three (keys from the pixels)
    assert cache.misses == 3 and sorted(cache.memory) == sorted(expected)
    blind = dict(batch, pixel_values=torch.full_like(batch["pixel_values"], float("nan")))
    again = model(blind)["loss_sum"]                  # every key cached: the (NaN) pixels are never read
    assert torch.isfinite(again) and torch.equal(again, first) and cache.misses == 3
    # one image not cached: falls back to the pixels, hashing them as before
    mixed = processor.collate(_samples(4))
    assert cache.lookup(mixed["image_keys"]) is None
    model(mixed)
    assert cache.misses == 4


def test_models_without_a_feature_cache_get_no_keys(tiny_model_builder, tmp_path):
    cfg = _model_cfg(tmp_path)
    cfg["vision_tower"]["feature_cache"] = None
    model = tiny_model_builder(cfg)
    assert "image_keys" not in build_processor(model.cfg, model).collate(_samples(1))
