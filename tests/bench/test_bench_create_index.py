"""bench_create_index.py: the collection it writes names every image; create_index under torchrun with 2 gloo
processes gives the vectors of a direct embedding of the files (the 1-process run is the same command with
--nproc_per_node 1; tests/retrieval/test_dense_index.py compares 1 and 2 processes)."""
import json

import numpy as np
import pytest

from bench import bench_create_index
from mmrag.retrieval.clip_embedder import ClipEmbedder


def test_two_processes_give_the_direct_vectors(tmp_path, monkeypatch):
    kept = {}
    original = bench_create_index.vectors

    def keep(out):
        kept[out.name] = original(out)
        return kept[out.name]

    monkeypatch.setattr(bench_create_index, "vectors", keep)
    monkeypatch.setattr(bench_create_index.tempfile, "TemporaryDirectory", lambda: _Keep(tmp_path))
    result = bench_create_index.main(["--toy", "--images", "12", "--shard-size", "4", "--nprocs", "2"])
    two = result["runs"]["2"]
    assert "error" not in two, result
    assert two["shards"] == 3 and result["images"] == 12
    assert two["images_per_s"] == pytest.approx(12 / two["seconds"], rel=0.05)
    # independent oracle: the tiny CLIP embeds the written files directly, in caption order
    entries = json.loads((tmp_path / "world" / "image_captions.json").read_text())
    assert len(entries) == 12 and all((tmp_path / "world" / e["image"]).is_file() for e in entries)
    direct = ClipEmbedder({"device": "cpu", "num_workers": 0}).encode_images([tmp_path / "world" / e["image"] for e in entries])
    np.testing.assert_allclose(kept["out_2"], direct, atol=1e-5)


class _Keep:
    """A TemporaryDirectory stand-in that leaves the folder for the test to read."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return str(self.path)

    def __exit__(self, *exc):
        return False
