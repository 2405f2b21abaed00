"""Benchmark: CLIP image-embedding throughput from files on disk (decode + preprocess + model, end to
end, through the DataLoader workers) and faiss search QPS. Prints one JSON line.

    python bench/bench_embedding.py --toy                      # CPU, tiny CLIP, a few seconds
    python bench/bench_embedding.py --model-name ViT-L-14 --images 2048 --batch-size 256 \
        --workers 8 --db-rows 1000000                          # GPU machine, SURf's CLIP shape
    python bench/bench_embedding.py --model-name ViT-L-14 --images 4096 --batch-size 256 \
        --workers 14 --decode cpu,gpu --db-rows 0              # PIL in workers vs nvJPEG, same run

`--decode` (a comma list, each timed in turn on the same files and model): `cpu` = PIL decode +
preprocess in the DataLoader workers; `gpu` = workers read bytes, the main process decodes with nvJPEG
and preprocesses on the GPU; `torchvision_cpu` = the `gpu` code path on the CPU (for toy runs).
Default: `cpu,gpu` on a CUDA machine, `cpu` otherwise. `--db-rows 0` skips the faiss search.

A built-in open_clip architecture runs with random weights (the speed does not depend on them).
Images are synthetic JPEGs written once to a temp folder (or --image-dir).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from mmrag.retrieval.clip_embedder import DECODE_MODES, ClipEmbedder  # noqa: E402
from mmrag.retrieval.dense_index import build_faiss_shard, index_spec  # noqa: E402


def write_images(folder: Path, count: int, size: int) -> List[Path]:
    """`count` random-noise JPEGs of size x size (noise: worst case for the JPEG decoder)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"bench_{i:06d}.jpg"
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def time_embedding(embedder: ClipEmbedder, paths: List[Path], workers: int, decode: str) -> Dict[str, float]:
    """Images/s over all paths after one warm-up batch (model init, nvJPEG init excluded once; the
    workers' start-up is inside the timed pass, as it is in a real run)."""
    embedder.encode_images(paths[: embedder.cfg["batch_size"]], num_workers=0, decode=decode)
    start = time.perf_counter()
    vectors = embedder.encode_images(paths, num_workers=workers, decode=decode)
    seconds = time.perf_counter() - start
    return {"images": len(paths), "embed_seconds": round(seconds, 3), "images_per_s": round(len(paths) / seconds, 1),
            "dim": int(vectors.shape[1])}


def decode_modes(text: Optional[str]) -> List[str]:
    """`--decode` as a list; by default PIL-in-workers and, on a CUDA machine, nvJPEG too."""
    import torch

    if text is None:
        return ["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"]
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in DECODE_MODES]
    if unknown or not modes:
        raise SystemExit(f"--decode {text!r}: unknown {unknown}; expected a comma list of {list(DECODE_MODES)}")
    return modes


def time_search(dim: int, rows: int, queries: int, k: int, spec: Dict[str, Any]) -> Dict[str, float]:
    """QPS of a batched top-k search over `rows` random unit vectors."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((rows, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    start = time.perf_counter()
    index = build_faiss_shard(base, index_spec(spec))
    build_s = time.perf_counter() - start
    q = base[rng.integers(0, rows, queries)] + 0.01 * rng.standard_normal((queries, dim), dtype=np.float32)
    start = time.perf_counter()
    index.search(q, k)
    seconds = time.perf_counter() - start
    return {"db_rows": rows, "queries": queries, "k": k, "index": spec.get("type", "flat"),
            "index_build_seconds": round(build_s, 3), "search_qps": round(queries / seconds, 1)}


def main(argv: List[str]) -> Dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="CPU-sized: 128 images of 96 px, 20k db rows")
    ap.add_argument("--model-name", default=None, help="open_clip architecture (default: the tiny CLIP)")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--image-size", type=int, default=384, help="side of the synthetic JPEGs (px)")
    ap.add_argument("--image-dir", default=None, help="embed the *.jpg here instead of synthetic images")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--decode", default=None, help="comma list of cpu, gpu, torchvision_cpu "
                    "(default: cpu,gpu with CUDA, else cpu); the top-level images_per_s is the fastest")
    ap.add_argument("--db-rows", type=int, default=200_000, help="faiss rows; 0 skips the search")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index-type", default="flat", help="flat | ivf | hnsw | pq | ivfpq")
    args = ap.parse_args(argv)
    if args.toy:
        args.images, args.image_size, args.db_rows, args.queries = 128, 96, 20_000, 500
    modes = decode_modes(args.decode)
    embedder = ClipEmbedder({"model_name": args.model_name, "batch_size": args.batch_size, "num_workers": args.workers})
    by_mode: Dict[str, Dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = sorted(Path(args.image_dir).glob("*.jpg"))[: args.images] if args.image_dir else write_images(Path(tmp), args.images, args.image_size)
        for mode in modes:
            by_mode[mode] = time_embedding(embedder, paths, args.workers, mode)
            print(f"decode {mode}: {by_mode[mode]}", flush=True)
    best = max(by_mode, key=lambda m: by_mode[m]["images_per_s"])
    emb = {**by_mode[best], "best_decode": best, "decode": by_mode,
           **{f"images_per_s_{mode}": fig["images_per_s"] for mode, fig in by_mode.items()}}
    search = time_search(emb["dim"], args.db_rows, args.queries, args.k, {"type": args.index_type}) if args.db_rows else {}
    import faiss
    import torch

    result = {"model": args.model_name or "tiny_clip", "device": str(embedder.device), "batch_size": args.batch_size,
              "workers": args.workers, "image_size": args.image_size, **emb, **search,
              "cpu_threads": torch.get_num_threads(), "faiss_gpus": getattr(faiss, "get_num_gpus", lambda: 0)(),
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
