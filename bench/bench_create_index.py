"""Benchmark: `create_index` (the dense database build) under torchrun with 1 process and with N, on the
same synthetic image collection: images/s of each whole command (process start, model build, embedding,
index writing) and whether the N-process vectors equal the 1-process ones. Prints one JSON line.

    python -m bench.bench_create_index --toy                 # CPU: 2 gloo processes, tiny CLIP, seconds
    python -m bench.bench_create_index --model-name ViT-L-14 --images 16384 --batch-size 512 \
        --workers 12 --decode gpu --cpu-decode-share 0.4 --nprocs 1,2      # 2 GPUs: issue 16 item 5

Each run is `python -m torch.distributed.run --standalone --nproc_per_node P -m mmrag.cli.create_index
--world W --out O key=value...` with the torch exact-search backend (no faiss needed) and
`shard_size` items per resumable shard (ranks take shards round-robin). `runs.<P>.images_per_s` = images
/ wall seconds of the command; `embed_images_per_s` uses the time from the first to the last embedding
shard written (the embedding alone, start-up excluded). `speedup_vs_1` = the P-process images/s over the
1-process one; `vectors_equal` compares every row (exactly) and `max_abs_diff` says by how much they differ.
Images: random-noise JPEGs as in bench_embedding.py (written once by a process pool), or --image-dir.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from bench.bench_embedding import write_images

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_world(folder: Path, args: argparse.Namespace) -> int:
    """The images and an image_captions.json naming them; the number of images."""
    folder.mkdir(parents=True, exist_ok=True)
    if args.image_dir:
        paths = sorted(Path(args.image_dir).glob("*.jpg"))[: args.images]
        entries = [{"image": str(p.resolve()), "caption": p.stem} for p in paths]
    else:
        paths = write_images(folder, args.images, args.image_size)
        entries = [{"image": p.name, "caption": f"picture {i}"} for i, p in enumerate(paths)]
    (folder / "image_captions.json").write_text(json.dumps(entries))
    return len(entries)


def overrides(args: argparse.Namespace) -> List[str]:
    out = [f"shard_size={args.shard_size}", "index.backend=torch", f"embedder.batch_size={args.batch_size}",
           f"embedder.num_workers={args.workers}", f"embedder.decode={args.decode}",
           f"embedder.cpu_decode_share={args.cpu_decode_share}"]
    if args.model_name:
        out.append(f"embedder.model_name={args.model_name}")
    if args.toy:
        out.append("embedder.device=cpu")
    return out


def embedding_span(out: Path) -> Optional[float]:
    """Seconds between the first and the last embedding shard file written (None with one shard)."""
    times = sorted(p.stat().st_mtime for p in (out / "embeddings").glob("shard_*.npy"))
    return times[-1] - times[0] if len(times) > 1 else None


def run_create_index(world: Path, out: Path, nproc: int, args: argparse.Namespace, images: int) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "mmrag.cli.create_index", "--world", str(world), "--out", str(out), "--no-progress", *overrides(args)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=args.timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}", "seconds": round(seconds, 2)}
    shards = sorted((out / "embeddings").glob("shard_*.npy"))
    span = embedding_span(out)
    per_shard = images / max(1, len(shards))
    return {"processes": nproc, "seconds": round(seconds, 2), "images_per_s": round(images / seconds, 1),
            "embed_images_per_s": round((images - per_shard) / span, 1) if span else None, "shards": len(shards)}


def vectors(out: Path) -> np.ndarray:
    return np.concatenate([np.load(p) for p in sorted((out / "embeddings").glob("shard_*.npy"))])


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="CPU: 48 images of 64 px, tiny CLIP, 1 and 2 gloo processes")
    ap.add_argument("--model-name", default=None, help="open_clip architecture (default: the tiny CLIP)")
    ap.add_argument("--images", type=int, default=16384)
    ap.add_argument("--image-size", type=int, default=384)
    ap.add_argument("--image-dir", default=None)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--workers", type=int, default=12, help="DataLoader workers per process")
    ap.add_argument("--decode", default="cpu", help="embedder.decode: cpu | gpu | torchvision_cpu")
    ap.add_argument("--cpu-decode-share", type=float, default=0.0)
    ap.add_argument("--shard-size", type=int, default=1024, help="items per embedding shard")
    ap.add_argument("--nprocs", default="1,2", help="comma list of process counts; the first is the baseline")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per create_index run")
    args = ap.parse_args(argv)
    if args.toy:  # toy sizes for the flags left at their defaults
        for key, value in {"images": 48, "image_size": 64, "batch_size": 8, "workers": 0, "shard_size": 8}.items():
            if getattr(args, key) == ap.get_default(key):
                setattr(args, key, value)
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    counts = [int(n) for n in args.nprocs.split(",") if n.strip()]
    runs: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        world = Path(tmp) / "world"
        images = write_world(world, args)
        for n in counts:
            runs[str(n)] = run_create_index(world, Path(tmp) / f"out_{n}", n, args, images)
            print(f"{n} process(es): {runs[str(n)]}", flush=True)
        base_key = str(counts[0])
        base = vectors(Path(tmp) / f"out_{base_key}") if "error" not in runs[base_key] else None
        for n in counts[1:]:
            fig = runs[str(n)]
            if "error" in fig or base is None:
                continue
            other = vectors(Path(tmp) / f"out_{n}")
            fig["vectors_equal"] = bool(other.shape == base.shape and np.array_equal(other, base))
            fig["max_abs_diff"] = float(np.abs(other - base).max()) if other.shape == base.shape else None
            fig["speedup_vs_1"] = round(fig["images_per_s"] / runs[base_key]["images_per_s"], 3)
            if fig.get("embed_images_per_s") and runs[base_key].get("embed_images_per_s"):
                fig["embed_speedup_vs_1"] = round(fig["embed_images_per_s"] / runs[base_key]["embed_images_per_s"], 3)
    import torch

    result = {"bench": "create_index", "toy": args.toy, "model": args.model_name or "tiny_clip", "images": images,
              "batch_size": args.batch_size, "workers_per_process": args.workers, "decode": args.decode,
              "cpu_decode_share": args.cpu_decode_share, "shard_size": args.shard_size, "runs": runs,
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None, "cpus": os.cpu_count()}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
