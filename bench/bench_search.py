"""Benchmark: exact inner-product top-k search with the dense database's torch backend (GPUs when
present) on random unit vectors, and its agreement with faiss `Flat` where faiss is installed.
Prints one JSON line.

    python -m bench.bench_search --toy                       # CPU, 20k x 64, a few seconds
    python -m bench.bench_search --rows 1200000 --dim 768 --queries 65536 --k 10     # the GPU target shape

    python -m bench.bench_search --rows 1200000 --dim 768 --queries 65536 --devices cuda:0 \
        --sweep 4096x262144,8192x1048576       # one GPU, two (query block x row chunk) settings

Figures: queries/s of the batched search (after one warm-up batch), the time to place the rows on the
devices, `recall_vs_exact_fp32`: recall@k of the searched rows against an exact float32 reference
(torch, on the first device, --check-queries queries; ties in the reference broken as faiss does),
and `recall_vs_faiss_flat` where faiss is importable. `--sweep` times each QUERY_BLOCKxROW_CHUNK
setting on the same placed rows (`sweep`); the top-level figure is the fastest setting.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Tuple

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
    for i in range(torch.cuda.device_count()):
        torch.cuda.synchronize(i)


@torch.no_grad()
def exact_fp32_topk(base: np.ndarray, queries: np.ndarray, k: int, device: str, chunk: int = 1 << 18) -> np.ndarray:
    """The reference: float32 inner products of every query with every row (rows moved to `device` chunk
    by chunk), top-k rows by score; ties go to the lower row (the sort is stable on row order)."""
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(device)
    best_s = best_r = None
    for r0 in range(0, len(base), chunk):
        rows = torch.from_numpy(base[r0:r0 + chunk]).to(device)
        scores = q @ rows.T
        idx = torch.arange(r0, r0 + rows.shape[0], device=device).expand(len(q), -1)
        s, r = (scores, idx) if best_s is None else (torch.cat([best_s, scores], 1), torch.cat([best_r, idx], 1))
        s, order = s.sort(dim=1, descending=True, stable=True)
        best_s, best_r = s[:, :k], r.gather(1, order[:, :k])
    return best_r.cpu().numpy()


def recall(truth: np.ndarray, rows: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(truth, rows)]))


def parse_sweep(text: str, query_block: int, row_chunk: int) -> List[Tuple[int, int]]:
    if not text:
        return [(query_block, row_chunk)]
    try:
        pairs = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or min(p) < 1 for p in pairs):
        raise SystemExit(f"--sweep {text!r}: expected a comma list of QUERY_BLOCKxROW_CHUNK, e.g. 8192x1048576")
    return pairs


def time_search(index: TorchExactIndex, queries: np.ndarray, k: int) -> Tuple[float, np.ndarray]:
    index.search(queries[: index.query_block], k)  # warm-up: kernels, allocator
    sync()
    start = time.perf_counter()
    _, rows = index.search(queries, k)
    sync()
    return time.perf_counter() - start, rows


def search_figures(base: np.ndarray, queries: np.ndarray, args: argparse.Namespace, settings: List[Tuple[int, int]],
                   devices: str) -> Dict[str, Any]:
    """Place the rows on `devices` (comma list; empty: the default), time each setting, check recall."""
    start = time.perf_counter()
    index = TorchExactIndex(base, devices=devices.split(",") if devices else None, dtype=args.dtype,
                            query_block=settings[0][0], row_chunk=settings[0][1])
    sync()
    place_s = time.perf_counter() - start
    sweep: Dict[str, Any] = {}
    best_rows, best_key = None, None
    for query_block, row_chunk in settings:
        index.query_block, index.row_chunk = query_block, row_chunk
        key = f"{query_block}x{row_chunk}"
        try:
            seconds, rows = time_search(index, queries, args.k)
        except torch.OutOfMemoryError as err:
            sweep[key] = {"error": f"out of memory: {str(err).splitlines()[0][:200]}"}
            torch.cuda.empty_cache()
            continue
        sweep[key] = {"search_seconds": round(seconds, 4), "queries_per_s": round(args.queries / seconds, 1)}
        print(f"{key}: {sweep[key]}", flush=True)
        if best_key is None or sweep[key]["queries_per_s"] > sweep[best_key]["queries_per_s"]:
            best_rows, best_key = rows, key
    check = min(args.check_queries, args.queries)
    ref_device = str(index.parts[0][1].device)
    result = {"bench": "search", "rows": args.rows, "dim": args.dim, "queries": args.queries, "k": args.k,
              "devices": [str(part.device) for _, part in index.parts],
              "dtype": str(index.parts[0][1].dtype).replace("torch.", ""), "place_seconds": round(place_s, 3),
              "best_setting": best_key, "sweep": sweep,
              "queries_per_s": sweep[best_key]["queries_per_s"] if best_key else None,
              "search_seconds": sweep[best_key]["search_seconds"] if best_key else None,
              "recall_check_queries": check,
              "recall_vs_exact_fp32": round(recall(exact_fp32_topk(base, queries[:check], args.k, ref_device),
                                                   best_rows[:check], args.k), 5) if check and best_key else None,
              "recall_vs_faiss_flat": recall_against_faiss(base, queries[:check], best_rows[:check], args.k)
              if check and best_key else None}
    del index
    free_devices()
    return result


def free_devices() -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: List[str]) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="20k x 64, 2,048 queries (CPU test size)")
    ap.add_argument("--rows", type=int, default=1_200_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=65_536)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--query-block", type=int, default=8192)
    ap.add_argument("--row-chunk", type=int, default=1 << 20)
    ap.add_argument("--sweep", default="", help="comma list of QUERY_BLOCKxROW_CHUNK settings timed in turn")
    ap.add_argument("--dtype", default="auto", help="auto (bf16 on GPUs, fp32 on the CPU) | float32 | bfloat16")
    ap.add_argument("--devices", default="", help="comma-separated torch devices (default: every GPU, else cpu); "
                    "several sets separated by ';' are timed in turn on the same vectors (`device_sets`), the "
                    "top-level figures are the first set's")
    ap.add_argument("--check-queries", type=int, default=1024, help="queries checked against the exact fp32 "
                    "reference (and faiss Flat where installed); 0: none")
    args = ap.parse_args(argv)
    if args.toy:
        args.rows, args.dim, args.queries = 20_000, 64, 2048
    settings = parse_sweep(args.sweep, args.query_block, args.row_chunk)
    rng = np.random.default_rng(0)
    base = unit_rows(rng, args.rows, args.dim)
    queries = base[rng.integers(0, args.rows, args.queries)] + 0.05 * unit_rows(rng, args.queries, args.dim)
    sets = [part for part in args.devices.split(";")] if args.devices else [""]
    results = [search_figures(base, queries, args, settings, devices) for devices in sets]
    result = {**results[0], "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    if len(results) > 1:
        result["device_sets"] = {",".join(r["devices"]): {k: r[k] for k in ("queries_per_s", "best_setting", "sweep",
                                 "place_seconds", "recall_vs_exact_fp32")} for r in results}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
