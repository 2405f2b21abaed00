"""bench_search.py: the fp32 reference is a brute-force top-k, the torch search agrees with it, bad flags fail."""
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


@pytest.mark.parametrize("text", ["8192", "0x10", "axb"])
def test_bad_sweep_fails(text):
    with pytest.raises(SystemExit):
        bench_search.parse_sweep(text, 1, 1)
