"""The torch exact-search backend: equal to brute force and to faiss Flat on the CPU, over several
device parts and chunk sizes, padded with -1 when k exceeds the rows; the dense database with
`backend: torch` writes vectors, loads without faiss and answers like the faiss backend."""
from __future__ import annotations

import builtins

import numpy as np
import pytest

from mmrag.retrieval.dense_index import DenseIndex, DenseIndexError, build_database
from mmrag.retrieval.exact_search import TorchExactIndex


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    return unit(rng.normal(size=(500, 24))), unit(rng.normal(size=(40, 24)))


@pytest.mark.parametrize("devices,query_block,row_chunk", [(["cpu"], 8192, 1 << 20), (["cpu", "cpu", "cpu"], 7, 64)])
def test_equals_brute_force(data, devices, query_block, row_chunk):
    base, queries = data
    scores, rows = TorchExactIndex(base, devices, query_block=query_block, row_chunk=row_chunk).search(queries, 10)
    full = queries @ base.T
    oracle = np.argsort(-full, axis=1, kind="stable")[:, :10]
    assert (rows == oracle).all()
    np.testing.assert_allclose(scores, np.take_along_axis(full, oracle, 1), atol=1e-5)


def test_equals_faiss_flat(data):
    faiss = pytest.importorskip("faiss")
    base, queries = data
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    want_scores, want_rows = index.search(queries, 10)
    scores, rows = TorchExactIndex(base, ["cpu", "cpu"], row_chunk=100).search(queries, 10)
    assert (rows == want_rows).all()
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_k_larger_than_the_rows_pads_with_minus_one():
    base = unit([[1, 0], [0, 1], [1, 1]])
    scores, rows = TorchExactIndex(base, ["cpu", "cpu"]).search(unit([[1, 0.1]]), 5)
    assert rows.tolist() == [[0, 2, 1, -1, -1]]
    assert np.isneginf(scores[0, 3:]).all()


@pytest.mark.parametrize("faiss_installed", [False, True], ids=["without_faiss", "with_faiss"])
def test_database_with_the_torch_backend_loads_without_faiss(tmp_path, data, monkeypatch, faiss_installed):
    """Built and loaded with faiss unimportable (the GPU machine has none) the torch backend's database
    answers like brute force; where faiss is installed, also like the faiss backend's database."""
    base, queries = data
    items = [{"id": f"img{i}", "image": f"images/img{i}.jpg", "caption": ""} for i in range(len(base))]
    real_import = builtins.__import__

    def no_faiss(name, *args, **kwargs):
        if name == "faiss" or name.startswith("faiss."):
            raise ImportError("faiss is not installed here")
        return real_import(name, *args, **kwargs)

    want = None
    if faiss_installed:
        pytest.importorskip("faiss")
        build_database(tmp_path / "faiss", base, items, progress=False)
        want = DenseIndex.load(tmp_path / "faiss").search(queries, 10)
    else:
        monkeypatch.setattr(builtins, "__import__", no_faiss)  # from the build on, as on a machine without faiss
    build_database(tmp_path / "torch", base, items, {"backend": "torch", "shard_rows": 120}, progress=False)
    assert sorted(p.suffix for p in (tmp_path / "torch" / "index").iterdir()) == [".npy"] * 5
    monkeypatch.setattr(builtins, "__import__", no_faiss)
    got = DenseIndex.load(tmp_path / "torch").search(queries, 10)
    full = queries @ base.T
    oracle = np.argsort(-full, axis=1, kind="stable")[:, :10]
    assert got.ids == [[items[row]["id"] for row in rows] for rows in oracle]
    np.testing.assert_allclose(got.scores, np.take_along_axis(full, oracle, 1), atol=1e-5)
    if want is not None:
        assert got.ids == want.ids
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)


def test_torch_backend_refuses_approximate_types(tmp_path, data):
    with pytest.raises(DenseIndexError, match="backend torch is exact search"):
        build_database(tmp_path / "db", data[0], [{"id": str(i)} for i in range(500)],
                       {"backend": "torch", "type": "ivf"}, progress=False)
    with pytest.raises(DenseIndexError, match="backend 'gpu' needs to be one of faiss, torch"):
        build_database(tmp_path / "db2", data[0], [{"id": str(i)} for i in range(500)], {"backend": "gpu"}, progress=False)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a GPU")
def test_gpu_search_equals_cpu_search(data):
    """On the GPU machine: float32 rows on the GPU give faiss-flat's answer exactly (brute force here as the
    oracle); the bf16 default keeps nearly every top-10 row, its scores within bf16 rounding."""
    import torch

    base, queries = data
    full = queries @ base.T
    oracle = np.argsort(-full, axis=1, kind="stable")[:, :10]
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # TF32 would round the float32 products like bf16
    try:
        scores, rows = TorchExactIndex(base, ["cuda:0"], dtype="float32", row_chunk=128).search(queries, 10)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    assert (rows == oracle).all()
    np.testing.assert_allclose(scores, np.take_along_axis(full, oracle, 1), atol=1e-5)
    scores16, rows16 = TorchExactIndex(base, ["cuda:0"]).search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows16, oracle)])
    assert recall >= 0.95
    np.testing.assert_allclose(scores16, np.take_along_axis(full, rows16, 1), atol=2e-2)
