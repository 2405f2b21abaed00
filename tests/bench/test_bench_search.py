"""bench_search.py: the fp32 reference is a brute-force top-k, the torch search agrees with it, bf16 with the
re-rank agrees with it and without it does not, bad flags fail."""
import json

import numpy as np
import pytest

from bench import bench_search


def test_exact_fp32_reference_is_the_brute_force_top_k_across_chunks():
    rng = np.random.default_rng(3)
    base = bench_search.unit_rows(rng, 300, 8)
    base[7] = base[250]  # a tie across two chunks: the lower row first
    queries = base[[250, 5, 17]] + 0.01 * bench_search.unit_rows(rng, 3, 8)
    got = bench_search.exact_fp32_topk(base, queries, 5, "cpu", chunk=64)
    scores = queries @ base.T
    want = np.argsort(-scores, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(got, want)
    assert got[0][0] == 7 and got[0][1] == 250


def test_toy_run_two_device_sets_full_recall():
    result = bench_search.main(["--queries", "512", "--rows", "3000", "--dim", "16", "--devices", "cpu;cpu,cpu",
                                "--sweep", "128x1000,512x4096", "--check-queries", "256"])
    assert (result["rows"], result["dim"], result["queries"]) == (3000, 16, 512)
    assert set(result["device_sets"]) == {"cpu", "cpu,cpu"}
    for fig in result["device_sets"].values():
        assert fig["recall_vs_exact_fp32"] == 1.0  # fp32 on the CPU: the same rows as the reference
        assert set(fig["sweep"]) == {"128x1000", "512x4096"}
    best = result["sweep"][result["best_setting"]]["queries_per_s"]
    assert best == max(v["queries_per_s"] for v in result["sweep"].values()) == result["queries_per_s"]


def test_toy_bf16_run_times_both_modes_and_only_the_rerank_is_exact(capsys):
    """Both modes timed on the same rows in one run; recall of each checked against the fp32 reference
    (here computed independently with numpy from the same seeded data)."""
    result = bench_search.main(["--queries", "256", "--rows", "3000", "--dim", "32", "--dtype", "bfloat16",
                                "--devices", "cpu,cpu", "--sweep", "128x1000x4,256x4096", "--check-queries", "256"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(line) == result  # the one JSON line
    assert result["dtype"] == "bfloat16" and set(result["sweep"]) == {"128x1000x4", "256x4096"}
    for entry in result["sweep"].values():
        assert entry["queries_per_s"] > 0 and entry["plain_queries_per_s"] > 0
    assert result["queries_per_s"] == max(v["queries_per_s"] for v in result["sweep"].values())
    assert result["plain"]["queries_per_s"] == max(v["plain_queries_per_s"] for v in result["sweep"].values())
    rng = np.random.default_rng(0)  # the bench's data, rebuilt: base, then the queries near base rows
    base = bench_search.unit_rows(rng, 3000, 32)
    queries = base[rng.integers(0, 3000, 256)] + 0.05 * bench_search.unit_rows(rng, 256, 32)
    truth = np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :10]
    rows = bench_search.TorchExactIndex(base, ["cpu"], dtype="bfloat16", rerank=False).search(queries, 10)[1]
    plain_recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, rows)])
    assert result["recall_vs_exact_fp32"] == result["same_rows_vs_exact_fp32"] == 1.0
    assert result["plain"]["recall_vs_exact_fp32"] == pytest.approx(plain_recall, abs=1e-5) and plain_recall < 1.0
    assert result["plain"]["same_rows_vs_exact_fp32"] < 1.0


@pytest.mark.parametrize("text", ["8192", "0x10", "axb", "1x2x3x4", "8x8x-1"])
def test_bad_sweep_fails(text):
    with pytest.raises(SystemExit):
        bench_search.parse_sweep(text, 1, 1)


def test_plain_mode_alone_fills_the_top_level():
    result = bench_search.main(["--queries", "64", "--rows", "500", "--dim", "8", "--dtype", "bfloat16",
                                "--devices", "cpu", "--modes", "plain", "--check-queries", "64"])
    assert result["mode"] == "plain" and "rerank" not in result
    assert result["queries_per_s"] == result["plain"]["queries_per_s"] > 0
    assert result["recall_vs_exact_fp32"] == result["plain"]["recall_vs_exact_fp32"] <= 1.0


def test_sweep_group_defaults_and_bad_modes():
    assert bench_search.parse_sweep("4x8,4x8x2", 1, 1, 0) == [(4, 8, 0), (4, 8, 2)]
    with pytest.raises(SystemExit):
        bench_search.parse_modes("rerank,fast")
