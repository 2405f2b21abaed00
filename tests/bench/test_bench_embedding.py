"""bench_embedding.py --cold: the overlapped start-up sees the same pixels as the embedder, and both cold
passes embed every image with figures that add up."""
import numpy as np
import pytest
import torch
from PIL import Image

from bench import bench_embedding
from mmrag.retrieval.clip_embedder import ClipEmbedder


def test_standalone_preprocess_matches_the_embedders():
    """The workers started before the model use a transform built without it: same pixels."""
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    want = ClipEmbedder({"device": "cpu"}).backend.preprocess(img)
    got = bench_embedding.standalone_preprocess(None)(img)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_cold_only_toy_run():
    result = bench_embedding.main(["--images", "40", "--image-size", "64", "--batch-size", "16", "--workers", "0", "--db-rows", "0",
                                   "--cold", "cpu", "--cold-only"])
    assert result["images"] == 40 and "model_only_images_per_s" not in result  # no warm breakdown
    for kind in ("serial", "overlap"):
        fig = result["cold"][kind]["cpu"]
        assert fig["images"] == 40
        assert fig["images_per_s"] == pytest.approx(40 / fig["seconds"], rel=0.01)
        assert fig["pass_seconds"] == pytest.approx(fig["seconds"] - fig["model_ready_s"], abs=2e-3)
        assert fig["model_ready_s"] <= fig["first_batch_s"] <= fig["seconds"]
    assert result["cold_images_per_s"] == result["cold"]["overlap"]["cpu"]["images_per_s"]


def test_cold_only_needs_cold():
    with pytest.raises(SystemExit):
        bench_embedding.main(["--toy", "--cold-only", "--db-rows", "0"])
