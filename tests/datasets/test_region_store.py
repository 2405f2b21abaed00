import json

import numpy as np
import pytest
import torch
from PIL import Image

from mmrag.common.registry import VISION_TOWERS
from mmrag.datasets.region_store import (RegionFeatureStore, RegionStoreError, RegionStoreWriter, crop,
                                         encode_regions, top_regions)
from mmrag.processors import ImageProcessor
from mmrag.models.vision_tower import build_vision_tower


@pytest.fixture(scope="module")
def tower():
    torch.manual_seed(0)
    return build_vision_tower({**VISION_TOWERS.get("hf_clip").default_config(), "select_layer": -1,
                               "config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                          "num_attention_heads": 2, "image_size": 16, "patch_size": 8}})


def _items(tmp_path, n=5):
    items = []
    for i in range(n):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        boxes = [[0, 0, 20, 20], [10, 10, 25, 25], [30, 30, 100, 100]][: 1 + i % 3]
        items.append({"key": f"im{i}", "path": str(path), "boxes": boxes, "scores": [0.9, 0.8, 0.7][: len(boxes)]})
    return items


def test_roundtrip_matches_direct_encoding(tmp_path, tower):
    items = _items(tmp_path)
    proc = ImageProcessor(16, tower.image_mean, tower.image_std)
    writer = RegionStoreWriter(tmp_path / "store", tower.hidden_size, top_k=2)
    assert encode_regions(tower, proc, items, writer, batch_size=3, shard_size=2, progress=False) == 5
    store = RegionFeatureStore(tmp_path / "store")
    assert len(store) == 5 and len(json.loads((tmp_path / "store/index.json").read_text())["shards"]) == 3
    img = Image.open(items[1]["path"]).convert("RGB")
    with torch.no_grad():
        direct = tower.hidden_states(torch.stack([proc(crop(img, b)) for b in items[1]["boxes"]]))[-1][:, 0]
    feats = store.get("im1")
    assert feats.shape == (2, 16) and torch.allclose(feats, direct, atol=1e-5)
    assert torch.all(store.get("im0")[1] == 0)  # one region, padded to top_k=2
    with pytest.raises(RegionStoreError, match="nope"):
        store.get("nope")


def test_interrupted_run_resumes_to_the_same_store(tmp_path, tower):
    items = _items(tmp_path)
    proc = ImageProcessor(16, tower.image_mean, tower.image_std)
    full = RegionStoreWriter(tmp_path / "full", 16, 2)
    encode_regions(tower, proc, items, full, shard_size=2, progress=False)
    part = RegionStoreWriter(tmp_path / "part", 16, 2)
    encode_regions(tower, proc, items[:2], part, shard_size=2, progress=False)  # "interrupted" after a shard
    resumed = RegionStoreWriter(tmp_path / "part", 16, 2)
    assert encode_regions(tower, proc, items, resumed, shard_size=2, progress=False) == 3
    a, b = RegionFeatureStore(tmp_path / "full"), RegionFeatureStore(tmp_path / "part")
    assert all(torch.equal(a.get(f"im{i}"), b.get(f"im{i}")) for i in range(5))
    with pytest.raises(ValueError, match="dim/top_k"):
        RegionStoreWriter(tmp_path / "part", 16, 3)


def test_top_regions_by_score():
    dets = [{"score": 0.1, "n": 1}, {"score": 0.9, "n": 2}, {"score": 0.5, "n": 3}]
    assert [d["n"] for d in top_regions(dets, 2)] == [2, 3]
