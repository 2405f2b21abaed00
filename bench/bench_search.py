"""Benchmark: exact inner-product top-k search with the dense database's torch backend (GPUs when
present) on random unit vectors, with and without the float32 re-rank of the bf16 candidates, and its
agreement with an exact float32 search and with faiss `Flat` where faiss is installed.
Prints one JSON line.

    python -m bench.bench_search --toy                       # CPU, 20k x 64, a few seconds
    python -m bench.bench_search --rows 1200000 --dim 768 --queries 65536 --k 10     # the GPU target shape

    python -m bench.bench_search --rows 1200000 --dim 768 --queries 65536 --devices cuda:0 \
        --sweep 4096x262144,8192x1048576       # one GPU, two (query block x row chunk) settings
        --sweep 8192x262144x64,8192x262144x1   # ... x top-k group (1: a plain topk over each chunk; 0: auto)

Figures: queries/s of the batched search (after one warm-up batch), the time to place the rows on the
devices, `recall_vs_exact_fp32`: recall@k of the searched rows against an exact float32 reference
(torch, on the first device, --check-queries queries; ties in the reference broken as faiss does),
`same_rows_vs_exact_fp32`: the share of those queries whose k rows, in order, are the reference's,
and `recall_vs_faiss_flat` where faiss is importable. `--sweep` times each QUERY_BLOCKxROW_CHUNK[xGROUP]
setting on the same placed rows (`sweep`); the top-level figure is the fastest setting.
`--modes rerank,plain` times both on the same placed rows: the top-level figures are the re-ranked
search's (`rerank`: float32 rows kept beside the bf16 ones), `plain` holds the bf16-only search's.
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


def parse_sweep(text: str, query_block: int, row_chunk: int, group: int = 0) -> List[Tuple[int, int, int]]:
    if not text:
        return [(query_block, row_chunk, group)]
    try:
        items = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        items = []
    if not items or any(len(p) not in (2, 3) or min(p[:2]) < 1 or p[-1] < 0 for p in items):
        raise SystemExit(f"--sweep {text!r}: expected a comma list of QUERY_BLOCKxROW_CHUNK[xGROUP], e.g. 8192x1048576")
    return [(p[0], p[1], p[2] if len(p) == 3 else group) for p in items]


def parse_modes(text: str) -> List[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or any(m not in ("rerank", "plain") for m in modes) or len(set(modes)) < len(modes):
        raise SystemExit(f"--modes {text!r}: expected rerank, plain or rerank,plain")
    return modes


def time_search(index: TorchExactIndex, queries: np.ndarray, k: int) -> Tuple[float, np.ndarray]:
    index.search(queries[: index.query_block], k)  # warm-up: kernels, allocator
    sync()
    start = time.perf_counter()
    _, rows = index.search(queries, k)
    sync()
    return time.perf_counter() - start, rows


def time_settings(index: TorchExactIndex, queries: np.ndarray, k: int, settings: List[Tuple[int, int, int]],
                  mode: str, sweep: Dict[str, Any]) -> Tuple[Any, Any]:
    """Time every setting in one mode (rerank: `queries_per_s`, plain: `plain_queries_per_s` in each
    sweep entry); return the fastest setting's key and rows."""
    index.rerank = mode == "rerank"
    prefix = "" if mode == "rerank" else "plain_"
    best_rows, best_key = None, None
    for query_block, row_chunk, group in settings:
        index.query_block, index.row_chunk, index.group = query_block, row_chunk, group
        key = f"{query_block}x{row_chunk}" + (f"x{group}" if group else "")  # group 0: the device's default
        entry = sweep.setdefault(key, {})
        try:
            seconds, rows = time_search(index, queries, k)
        except torch.OutOfMemoryError as err:
            entry[f"{prefix}error"] = f"out of memory: {str(err).splitlines()[0][:200]}"
            torch.cuda.empty_cache()
            continue
        entry.update({f"{prefix}search_seconds": round(seconds, 4),
                      f"{prefix}queries_per_s": round(len(queries) / seconds, 1)})
        print(f"{mode} {key}: {entry}", flush=True)
        if best_key is None or entry[f"{prefix}queries_per_s"] > sweep[best_key][f"{prefix}queries_per_s"]:
            best_rows, best_key = rows, key
    return best_key, best_rows


def accuracy(base: np.ndarray, queries: np.ndarray, rows: Any, reference: np.ndarray, k: int) -> Dict[str, Any]:
    if rows is None or not len(reference):
        return {"recall_vs_exact_fp32": None, "same_rows_vs_exact_fp32": None, "recall_vs_faiss_flat": None}
    rows = rows[:len(reference)]
    return {"recall_vs_exact_fp32": round(recall(reference, rows, k), 5),
            "same_rows_vs_exact_fp32": round(float(np.mean((reference == rows).all(axis=1))), 5),
            "recall_vs_faiss_flat": recall_against_faiss(base, queries[:len(reference)], rows, k)}


def search_figures(base: np.ndarray, queries: np.ndarray, args: argparse.Namespace,
                   settings: List[Tuple[int, int, int]], devices: str) -> Dict[str, Any]:
    """Place the rows on `devices` (comma list; empty: the default), time each setting in each mode,
    check recall against the exact float32 reference."""
    modes = parse_modes(args.modes)
    start = time.perf_counter()
    index = TorchExactIndex(base, devices=devices.split(",") if devices else None, dtype=args.dtype,
                            query_block=settings[0][0], row_chunk=settings[0][1], group=settings[0][2],
                            rerank="rerank" in modes, candidates=args.candidates, rerank_rows=args.rerank_rows)
    sync()
    place_s = time.perf_counter() - start
    sweep: Dict[str, Any] = {}
    best = {mode: time_settings(index, queries, args.k, settings, mode, sweep) for mode in modes}
    check = min(args.check_queries, args.queries)
    reference = exact_fp32_topk(base, queries[:check], args.k, str(index.parts[0][1].device)) if check else []
    result = {"bench": "search", "rows": args.rows, "dim": args.dim, "queries": args.queries, "k": args.k,
              "devices": [str(part.device) for _, part in index.parts],
              "dtype": str(index.parts[0][1].dtype).replace("torch.", ""), "place_seconds": round(place_s, 3),
              "sweep": sweep, "recall_check_queries": check}
    for mode in modes:
        key, rows = best[mode]
        prefix = "" if mode == "rerank" else "plain_"
        figures = {"best_setting": key,
                   "queries_per_s": sweep[key][f"{prefix}queries_per_s"] if key else None,
                   "search_seconds": sweep[key][f"{prefix}search_seconds"] if key else None,
                   **accuracy(base, queries, rows, reference, args.k)}
        if mode == "rerank" or "rerank" not in modes:  # top level: the re-ranked search, else the plain one
            result.update(figures, mode=mode)
        if mode == "rerank":
            result["rerank"] = {"candidates": args.candidates or "max(4k, 32)", "rows": args.rerank_rows}
        else:
            result["plain"] = figures
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
    ap.add_argument("--group", type=int, default=0, help="rows per group of the grouped top-k (1: plain topk; "
                    "0: 64 on GPUs, 1 on the CPU)")
    ap.add_argument("--sweep", default="", help="comma list of QUERY_BLOCKxROW_CHUNK[xGROUP] settings timed in turn")
    ap.add_argument("--modes", default="rerank,plain", help="rerank (bf16 candidates re-scored on float32 rows), "
                    "plain (bf16 scores only) or both, timed on the same placed rows")
    ap.add_argument("--candidates", type=int, default=0,
                    help="bf16 candidates per query for the re-rank; 0: max(4k, 32)")
    ap.add_argument("--rerank-rows", default="device", choices=("device", "host"),
                    help="where the float32 rows of the re-rank live")
    ap.add_argument("--dtype", default="auto", help="auto (bf16 on GPUs, fp32 on the CPU) | float32 | bfloat16")
    ap.add_argument("--devices", default="", help="comma-separated torch devices (default: every GPU, else cpu); "
                    "several sets separated by ';' are timed in turn on the same vectors (`device_sets`), the "
                    "top-level figures are the first set's")
    ap.add_argument("--check-queries", type=int, default=1024, help="queries checked against the exact fp32 "
                    "reference (and faiss Flat where installed); 0: none")
    args = ap.parse_args(argv)
    if args.toy:
        args.rows, args.dim, args.queries = 20_000, 64, 2048
    settings = parse_sweep(args.sweep, args.query_block, args.row_chunk, args.group)
    parse_modes(args.modes)
    rng = np.random.default_rng(0)
    base = unit_rows(rng, args.rows, args.dim)
    queries = base[rng.integers(0, args.rows, args.queries)] + 0.05 * unit_rows(rng, args.queries, args.dim)
    sets = [part for part in args.devices.split(";")] if args.devices else [""]
    results = [search_figures(base, queries, args, settings, devices) for devices in sets]
    result = {**results[0], "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    if len(results) > 1:
        result["device_sets"] = {",".join(r["devices"]): {k: r.get(k) for k in ("queries_per_s", "best_setting", "sweep",
                                 "place_seconds", "recall_vs_exact_fp32", "plain")} for r in results}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
