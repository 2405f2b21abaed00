"""Benchmark: exact inner-product top-k search with the dense database's torch backend (GPUs when
present) on random unit vectors, and its agreement with faiss `Flat` where faiss is installed.
Prints one JSON line.

    python -m bench.bench_search --toy                       # CPU, 20k x 64, a few seconds
    python -m bench.bench_search --rows 1200000 --dim 768 --queries 65536 --k 10     # the GPU target shape

Figures: queries/s of the batched search (after one warm-up batch), the time to place the rows on the
devices, and recall@k of the torch results against faiss Flat on the same vectors (when faiss is
importable and the shape is small enough to search on the CPU: --check-queries of them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List

import numpy as np
import torch

from mmrag.retrieval.exact_search import TorchExactIndex


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall_against_faiss(base: np.ndarray, queries: np.ndarray, rows: np.ndarray, k: int):
    """Share of faiss Flat's top-k rows that the torch search also returned; None without faiss."""
    try:
        import faiss
    except ImportError:
        return None
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    _, truth = index.search(queries, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth, rows)]))


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: List[str]) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="20k x 64, 2,048 queries (CPU test size)")
    ap.add_argument("--rows", type=int, default=1_200_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=65_536)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--query-block", type=int, default=8192)
    ap.add_argument("--dtype", default="auto", help="auto (bf16 on GPUs, fp32 on the CPU) | float32 | bfloat16")
    ap.add_argument("--devices", default="", help="comma-separated torch devices (default: every GPU, else cpu)")
    ap.add_argument("--check-queries", type=int, default=1024, help="queries compared with faiss Flat (0: none)")
    args = ap.parse_args(argv)
    if args.toy:
        args.rows, args.dim, args.queries = 20_000, 64, 2048
    rng = np.random.default_rng(0)
    base = unit_rows(rng, args.rows, args.dim)
    queries = base[rng.integers(0, args.rows, args.queries)] + 0.05 * unit_rows(rng, args.queries, args.dim)
    start = time.perf_counter()
    index = TorchExactIndex(base, devices=args.devices.split(",") if args.devices else None, dtype=args.dtype,
                            query_block=args.query_block)
    sync()
    place_s = time.perf_counter() - start
    index.search(queries[: args.query_block], args.k)  # warm-up: kernels, allocator
    sync()
    start = time.perf_counter()
    _, rows = index.search(queries, args.k)
    sync()
    seconds = time.perf_counter() - start
    check = min(args.check_queries, args.queries)
    result = {"rows": args.rows, "dim": args.dim, "queries": args.queries, "k": args.k,
              "devices": [str(part.device) for _, part in index.parts],
              "dtype": str(index.parts[0][1].dtype).replace("torch.", ""), "place_seconds": round(place_s, 3),
              "search_seconds": round(seconds, 4), "queries_per_s": round(args.queries / seconds, 1),
              "recall_vs_faiss_flat": recall_against_faiss(base, queries[:check], rows[:check], args.k) if check else None,
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
