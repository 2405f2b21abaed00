"""The torch exact search's float32 re-rank of bf16 candidates and its grouped top-k: the re-ranked
answer equals a float64 brute force exactly (rows, and scores as the correctly rounded float32),
while the plain bf16 answer does not (a constructed pair bf16 cannot tell apart, and random data);
ties go to the lower row; every chunk / block / group size gives the same answer; the database
config switches it off and validates it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mmrag.retrieval.dense_index import DenseIndex, DenseIndexError, build_database, index_spec
from mmrag.retrieval.exact_search import TorchExactIndex, top_columns


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def oracle(base, queries, k):
    """Brute force in float64 (numpy, independent of the code under test), each score rounded once to
    float32: rows best first, equal float32 scores to the lower row."""
    full = (queries.astype(np.float64) @ base.astype(np.float64).T).astype(np.float32)
    rows = np.argsort(-full, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(full, rows, 1), rows


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    return unit(rng.normal(size=(3000, 48))), unit(rng.normal(size=(200, 48)))


@pytest.mark.parametrize("devices,query_block,row_chunk,group", [  # grouped top-k from a chunk of 2 x 40 x group
    (["cpu"], 8192, 1 << 20, 64), (["cpu", "cpu"], 37, 400, 3), (["cpu"] * 3, 64, 257, 2), (["cpu"], 200, 3000, 8),
    (["cpu"], 200, 3000, 1)])
def test_bf16_rerank_equals_float64_brute_force_exactly(data, devices, query_block, row_chunk, group):
    base, queries = data
    index = TorchExactIndex(base, devices, dtype="bfloat16", query_block=query_block, row_chunk=row_chunk, group=group)
    assert index.rerank  # the default for bf16 rows
    scores, rows = index.search(queries, 10)
    want_scores, want_rows = oracle(base, queries, 10)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(scores, want_scores)
    float32_rows = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :10]  # the float32 brute force too
    np.testing.assert_array_equal(rows, float32_rows)


def test_plain_bf16_differs_from_brute_force_on_the_same_data(data):
    """The oracle above can fail: without the re-rank, bf16 rounding swaps or drops neighbours."""
    base, queries = data
    _, want_rows = oracle(base, queries, 10)
    _, rows = TorchExactIndex(base, ["cpu"], dtype="bfloat16", rerank=False).search(queries, 10)
    assert (rows != want_rows).any(axis=1).sum() >= 5
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, want_rows)])
    assert 0.9 < recall < 1.0


def test_a_pair_bf16_rounds_together_is_ranked_by_the_rerank():
    """0.5 and 0.5019 are the same bf16 number (0.5), so plain bf16 sees a tie and puts the lower row
    first; the float32 re-rank puts row 1 (0.5019) first."""
    base = np.array([[0.5, 0.0], [0.5019, 0.0], [0.1, 0.2], [-0.3, 0.1]], dtype=np.float32)
    query = np.array([[1.0, 0.0]], dtype=np.float32)
    plain_scores, plain = TorchExactIndex(base, ["cpu"], dtype="bfloat16", rerank=False).search(query, 2)
    assert plain.tolist() == [[0, 1]] and plain_scores.tolist() == [[0.5, 0.5]]
    scores, rows = TorchExactIndex(base, ["cpu"], dtype="bfloat16").search(query, 2)
    assert rows.tolist() == [[1, 0]]
    assert scores.tolist() == [[np.float32(0.5019), 0.5]]


@pytest.mark.parametrize("dtype,rerank", [("float32", "auto"), ("float32", True), ("bfloat16", "auto")])
@pytest.mark.parametrize("row_chunk,group", [(1 << 20, 64), (7, 2), (50, 2), (130, 3)])
def test_ties_go_to_the_lower_row(dtype, rerank, row_chunk, group):
    """Copies of one row at 5, 40, 41, 77 and 120 (other chunks, other parts): they tie, and the lower rows
    come first, as faiss; k cuts through the tied rows."""
    rng = np.random.default_rng(1)
    base = unit(rng.normal(size=(130, 6)))
    base[[5, 40, 41, 77, 120]] = base[77]
    query = (base[77] + 0.01 * unit(rng.normal(size=(1, 6)))).astype(np.float32)
    for devices in (["cpu"], ["cpu", "cpu"], ["cpu"] * 3):
        index = TorchExactIndex(base, devices, dtype=dtype, rerank=rerank, row_chunk=row_chunk, group=group,
                                candidates=8)
        _, rows = index.search(query, 3)
        assert rows.tolist() == [[5, 40, 41]]
        _, rows = index.search(query, 6)
        assert rows[0, :5].tolist() == [5, 40, 41, 77, 120]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_k_larger_than_the_rows_pads_with_minus_one(dtype):
    base = unit([[1, 0], [0, 1], [1, 1]])
    scores, rows = TorchExactIndex(base, ["cpu", "cpu"], dtype=dtype, rerank=True).search(unit([[1, 0.1]]), 5)
    assert rows.tolist() == [[0, 2, 1, -1, -1]]
    assert np.isneginf(scores[0, 3:]).all()


def test_float32_rows_on_the_host_give_the_same_answer(data):
    base, queries = data
    device = TorchExactIndex(base, ["cpu", "cpu"], dtype="bfloat16", row_chunk=500).search(queries, 10)
    host_index = TorchExactIndex(base, ["cpu", "cpu"], dtype="bfloat16", row_chunk=500, rerank_rows="host")
    assert host_index.exact_rows[0].data_ptr() != host_index.parts[0][1].data_ptr()
    host = host_index.search(queries, 10)
    np.testing.assert_array_equal(host[1], device[1])
    np.testing.assert_array_equal(host[0], device[0])


@pytest.mark.parametrize("n,c,group", [(1000, 5, 8), (1001, 5, 8), (997, 40, 3), (64, 10, 64), (5000, 1, 7)])
def test_grouped_top_columns_equal_topk_in_value(n, c, group):
    """Scores drawn from 20 values (many ties, tied maxima across groups): the grouped selection returns
    the same multiset of values as a full sort, from distinct columns that hold those values."""
    rng = np.random.default_rng(n + c)
    scores = torch.from_numpy(rng.integers(0, 20, size=(16, n)).astype(np.float32))
    values, cols = top_columns(scores, c, group)
    want = np.sort(scores.numpy(), axis=1)[:, ::-1][:, :c]
    np.testing.assert_array_equal(np.sort(values.numpy(), axis=1)[:, ::-1], want)
    np.testing.assert_array_equal(scores.gather(1, cols).numpy(), values.numpy())
    assert all(len(set(row)) == c for row in cols.tolist())


def test_database_config_reaches_the_search(tmp_path, data):
    """index.torch_rerank / torch_candidates / torch_rerank_rows written by build_database reach every
    shard's search when the database is loaded; both settings answer like the float64 brute force."""
    base, queries = data
    items = [{"id": f"img{i}", "image": f"images/img{i}.jpg", "caption": ""} for i in range(len(base))]
    common = {"backend": "torch", "shard_rows": 1000, "use_gpu": False}
    build_database(tmp_path / "auto", base, items, common, progress=False)
    build_database(tmp_path / "on", base, items, {**common, "torch_rerank": True, "torch_candidates": 64,
                                                  "torch_rerank_rows": "host"}, progress=False)
    auto, on = DenseIndex.load(tmp_path / "auto"), DenseIndex.load(tmp_path / "on")
    assert [index.rerank for _, index in auto.shards] == [False] * 3  # auto: float32 rows on the CPU need none
    assert [(index.rerank, index.candidates) for _, index in on.shards] == [(True, 64)] * 3
    _, want_rows = oracle(base, queries, 10)
    for db in (auto, on):
        got = db.search(queries, 10)
        assert got.ids == [[f"img{r}" for r in row] for row in want_rows]


def test_the_rerank_switches_off(data):
    base, queries = data
    index = TorchExactIndex(base, ["cpu"], dtype="bfloat16", rerank=index_spec({"torch_rerank": False})["torch_rerank"])
    assert not index.rerank and index.exact_rows == [None]


@pytest.mark.parametrize("key,value,message", [
    ("torch_rerank", "yes", "torch_rerank 'yes' needs to be auto, true or false"),
    ("torch_rerank", 1, "torch_rerank 1 needs to be auto, true or false"),
    ("torch_candidates", -1, "torch_candidates -1 needs to be an integer >= 0"),
    ("torch_candidates", 2.5, "torch_candidates 2.5 needs to be an integer >= 0"),
    ("torch_rerank_rows", "disk", "torch_rerank_rows 'disk' needs to be one of device, host")])
def test_database_config_validates_the_rerank_keys(key, value, message):
    with pytest.raises(DenseIndexError, match=message):
        index_spec({"backend": "torch", key: value})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("rerank_rows", ["device", "host"])
def test_gpu_bf16_rerank_equals_float64_brute_force(data, rerank_rows):
    base, queries = data
    index = TorchExactIndex(base, ["cuda:0"], row_chunk=1024, group=8, rerank_rows=rerank_rows)
    assert index.parts[0][1].dtype == torch.bfloat16 and index.rerank
    scores, rows = index.search(queries, 10)
    want_scores, want_rows = oracle(base, queries, 10)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_array_equal(scores, want_scores)
