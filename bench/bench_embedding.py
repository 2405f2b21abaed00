"""Benchmark: CLIP image-embedding throughput from files on disk (decode + preprocess + model, end to
end, through the DataLoader workers), where that time goes, and faiss search QPS. Prints one JSON line.

    python -m bench.bench_embedding --toy                      # CPU, tiny CLIP, a few seconds
    python -m bench.bench_embedding --model-name ViT-L-14 --images 2048 --batch-size 256 \
        --workers 8 --db-rows 1000000                          # GPU machine, SURf's CLIP shape
    python -m bench.bench_embedding --model-name ViT-L-14 --images 8192 --batch-size 256 \
        --workers 14 --decode gpu,cpu --db-rows 0 --compile    # breakdown, nvJPEG vs PIL, compiled model
    python -m bench.bench_embedding --model-name ViT-L-14 --images 16384 --batch-size 512 --workers 14 \
        --db-rows 0 --cold gpu@0.4,cpu --prefetch 2 --cold-only   # start-up included: serial vs overlapped

`--decode` (a comma list, each timed in turn on the same files and model): `cpu` = PIL decode +
preprocess in the DataLoader workers; `gpu` = workers read bytes, the main process decodes with nvJPEG
and preprocesses on the GPU; `torchvision_cpu` = the `gpu` code path on the CPU (for toy runs). A
mode may carry `@SHARE` (e.g. `gpu@0.3`): that share of the images is decoded by PIL in the workers
instead (embedder key `cpu_decode_share`), so the GPU spends less time decoding. Default: `cpu,gpu` on a CUDA machine, `cpu` otherwise. `--db-rows 0` skips the faiss search.

The breakdown, all in one run and on the same model:
- `model_only_images_per_s`: the embedder's image model (same precision, batch size and compile
  setting as the real run) on random pixels already on the device, after `model_warmup_s` of warm-up
  (the compile, with `--compile`); with `--compile` also `model_only_eager_images_per_s` and
  `compiled_vs_eager_min_cosine` (compiled vs eager vectors of one random batch: 1.0 = the same);
- `decode_only_images_per_s.<mode>`: read + decode + preprocess onto the device, no model (steady rate);
- per mode in `decode.<mode>`: the end-to-end pass as `images_per_s` (whole pass, worker start-up
  included: the honest figure), `first_batch_s` (start-up + first block of vectors on the host; on
  CUDA that block arrives once the second batch is queued) and `steady_images_per_s` (the rest);
  the same three for the decode-only pass; `bound_images_per_s` = the slower of model and decode
  (what perfect overlap gives) and `serial_images_per_s` (what no overlap gives).

`--cold MODE[,MODE...]` (issue 16): the figure a user gets from a fresh process, start-up included. The
clock starts before anything is built; per mode it is measured twice in new embedders:
- `serial`: the embedder is built (model on the device, cast, compiled with `--cold-compile`, warmed on
  one random batch), then the DataLoader starts its workers (as `create_index` does today);
- `overlap`: the DataLoader's iterator is started first (its workers begin decoding the first
  `--prefetch` batches each), the model is built and compiled while they work, then the pass runs.
Each gives `images_per_s` (all images / time from the start, model build included), `model_ready_s`
(when the model could take its first batch), `pass_images_per_s` (images / time from model ready to
the last vector: with `serial` the workers' start-up is inside it, the figure `decode.<mode>.images_per_s`
gives; with `overlap` it was hidden behind the model build), `first_batch_s` and `steady_images_per_s`. The JSON keys are
`cold.<serial|overlap>.<mode>` and `cold_images_per_s` (the best overlapped figure). `--cold-only`
skips the warm breakdown above (model-only, decode-only and warm end to end passes).

A built-in open_clip architecture runs with random weights (the speed does not depend on them).
Images are synthetic noise JPEGs (worst case for the decoder), written once to a temp folder by a
process pool (or taken from --image-dir).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sized, Tuple

import numpy as np

from mmrag.retrieval.clip_embedder import DECODE_MODES, TINY_CLIP_CFG, ClipEmbedder

IMAGES_PER_WRITE_TASK = 256


def _write_image_range(task: Tuple[str, int, int, int]) -> None:
    """Write bench_{i}.jpg for i in [start, stop); each image seeded by its index (same files whatever the pool)."""
    from PIL import Image

    folder, start, stop, size = task
    for i in range(start, stop):
        pixels = np.random.default_rng(i).integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(Path(folder) / f"bench_{i:06d}.jpg", quality=90)


def write_images(folder: Path, count: int, size: int) -> List[Path]:
    """`count` random-noise JPEGs of size x size, written by a process pool (PIL encodes ~2-4 ms an image
    at 384 px: 16k images would take a minute on one core)."""
    tasks = [(str(folder), s, min(s + IMAGES_PER_WRITE_TASK, count), size) for s in range(0, count, IMAGES_PER_WRITE_TASK)]
    with ProcessPoolExecutor(max_workers=max(1, min(len(tasks), os.cpu_count() or 1))) as pool:
        list(pool.map(_write_image_range, tasks))
    return [folder / f"bench_{i:06d}.jpg" for i in range(count)]


def _sync_for(embedder: ClipEmbedder) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if embedder.device.type == "cuda" else (lambda: None)


def timed_pass(blocks: Iterable[Sized], sync: Callable[[], None]) -> Dict[str, Any]:
    """Time one pass over `blocks` (batches of rows): the whole pass, the start-up + first batch, and the
    steady rate after the first batch (None when there was only one batch)."""
    start = time.perf_counter()
    first_s, first_rows, rows = 0.0, 0, 0
    for block in blocks:
        rows += len(block)
        if not first_rows:
            sync()
            first_s, first_rows = time.perf_counter() - start, rows
    sync()
    seconds = time.perf_counter() - start
    steady = (rows - first_rows) / (seconds - first_s) if rows > first_rows and seconds > first_s else None
    return {"images": rows, "seconds": round(seconds, 3), "images_per_s": round(rows / seconds, 1),
            "first_batch_s": round(first_s, 3), "steady_images_per_s": None if steady is None else round(steady, 1)}


def model_input_shape(embedder: ClipEmbedder) -> Tuple[int, int, int, int]:
    """(batch_size, 3, h, w) of the pixels the image model gets, from the embedder's preprocess."""
    spec = embedder.backend.pixel_spec()
    size = spec.crop or (spec.resize if len(spec.resize) == 2 else None)
    if size is None:
        raise SystemExit("model-only timing needs a preprocess with a centre crop or a (h, w) resize")
    return int(embedder.cfg["batch_size"]), 3, int(size[0]), int(size[1])


def random_pixels(embedder: ClipEmbedder) -> Any:
    """One batch of random preprocessed pixels, already on the device (seeded: same batch every call)."""
    import torch

    gen = torch.Generator(device=embedder.device).manual_seed(0)
    return torch.randn(model_input_shape(embedder), generator=gen, device=embedder.device)


def time_model(embedder: ClipEmbedder, batches: int) -> Dict[str, float]:
    """Images/s of `embedder.image_features` on random pixels on the device, after 2 warm-up batches
    (the first compiles when compile is on: `warmup_s`)."""
    sync = _sync_for(embedder)
    pixels = random_pixels(embedder)
    start = time.perf_counter()
    for _ in range(2):
        embedder.image_features(pixels)
    sync()
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        embedder.image_features(pixels)
    sync()
    seconds = time.perf_counter() - start
    return {"images_per_s": round(batches * pixels.shape[0] / seconds, 1), "warmup_s": round(warmup_s, 3)}


def time_mode(embedder: ClipEmbedder, paths: List[Path], workers: int, mode: str, model_rate: float) -> Dict[str, Any]:
    """Decode-only pass, then the end-to-end pass, for one decode mode, after one in-process warm-up batch
    (nvJPEG init, first decode); the workers' start-up is inside both timed passes, as in a real run.
    `mode` is DECODE[@SHARE]: SHARE sets the embedder's cpu_decode_share for this mode."""
    decode, _, share = mode.partition("@")
    embedder.cfg["cpu_decode_share"] = float(share) if share else 0.0
    sync = _sync_for(embedder)
    embedder.encode_images(paths[: embedder.cfg["batch_size"]], num_workers=0, decode=decode)
    decode_only = timed_pass(embedder.pixel_batches(paths, workers, decode), sync)
    end_to_end = timed_pass(embedder.image_batches(paths, workers, decode), sync)
    decode_rate = decode_only["steady_images_per_s"] or decode_only["images_per_s"]
    return {**end_to_end, "embed_seconds": end_to_end["seconds"], "decode_only": decode_only,
            "cpu_decode_share": embedder.cfg["cpu_decode_share"],
            "bound_images_per_s": round(min(model_rate, decode_rate), 1),
            "serial_images_per_s": round(1.0 / (1.0 / model_rate + 1.0 / decode_rate), 1)}


def decode_modes(text: Optional[str]) -> List[str]:
    """`--decode` as a list of DECODE[@SHARE]; by default PIL-in-workers and, on a CUDA machine, nvJPEG too."""
    import torch

    if text is None:
        return ["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"]
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if not _valid_mode(m)]
    if bad or not modes:
        raise SystemExit(f"--decode {text!r}: bad {bad}; expected a comma list of DECODE[@SHARE], DECODE one of "
                         f"{list(DECODE_MODES)}, SHARE in [0, 1] (not with cpu)")
    return modes


def _valid_mode(mode: str) -> bool:
    decode, at, share = mode.partition("@")
    if decode not in DECODE_MODES:
        return False
    if not at:
        return True
    try:
        return decode != "cpu" and 0.0 <= float(share) <= 1.0
    except ValueError:
        return False


def time_search(dim: int, rows: int, queries: int, k: int, spec: Dict[str, Any]) -> Dict[str, float]:
    """QPS of a batched top-k search over `rows` random unit vectors."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((rows, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    from mmrag.retrieval.dense_index import build_faiss_shard, index_spec  # faiss only when searching

    start = time.perf_counter()
    index = build_faiss_shard(base, index_spec(spec))
    build_s = time.perf_counter() - start
    q = base[rng.integers(0, rows, queries)] + 0.01 * rng.standard_normal((queries, dim), dtype=np.float32)
    start = time.perf_counter()
    index.search(q, k)
    seconds = time.perf_counter() - start
    return {"db_rows": rows, "queries": queries, "k": k, "index": spec.get("type", "flat"),
            "index_build_seconds": round(build_s, 3), "search_qps": round(queries / seconds, 1)}


def faiss_gpus() -> Optional[int]:
    """GPUs faiss can use; None where faiss is not installed (a run with --db-rows 0 does not need it)."""
    try:
        import faiss
    except ImportError:
        return None
    return getattr(faiss, "get_num_gpus", lambda: 0)()


def standalone_preprocess(model_name: Optional[str]) -> Any:
    """The open_clip eval preprocess of the architecture, built without the model (so the DataLoader's
    workers can start before the model exists); the embedder builds the same transform."""
    import open_clip

    arch = open_clip.get_model_config(model_name) if model_name else TINY_CLIP_CFG
    return open_clip.image_transform(arch["vision_cfg"].get("image_size", 224), is_train=False)


def start_loader(paths: List[Path], preprocess: Any, mode: str, batch_size: int, workers: int, prefetch: int,
                 device: Any) -> Iterator[Any]:
    """Started pixel batches of `paths` for decode MODE[@SHARE] on `device` (the embedder's own loader,
    mmrag.retrieval.image_pipeline.start_pixel_loader: its workers start at this call)."""
    import torch
    from mmrag.retrieval.image_pipeline import pixel_spec_from_transform, start_pixel_loader

    decode, _, share = mode.partition("@")
    decode_device = None if decode == "cpu" else torch.device("cpu") if decode == "torchvision_cpu" else device
    return start_pixel_loader(paths, preprocess, pixel_spec_from_transform(preprocess), decode_device, device,
                              batch_size, workers, float(share or 0.0), prefetch)


def build_embedder(args: argparse.Namespace) -> ClipEmbedder:
    return ClipEmbedder({"model_name": args.model_name, "batch_size": args.batch_size, "num_workers": args.workers,
                         "image_weights": args.image_weights})


def cold_pass(args: argparse.Namespace, paths: List[Path], mode: str, overlap: bool) -> Dict[str, Any]:
    """One start-up-inclusive pass in a fresh embedder (module docstring, `--cold`)."""
    import torch
    from mmrag.retrieval.image_pipeline import lagged_host_copies

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    start = time.perf_counter()
    batches = None
    if overlap:
        batches = start_loader(paths, standalone_preprocess(args.model_name), mode, args.batch_size,
                               args.workers, args.prefetch, device)
    embedder = build_embedder(args)
    if args.cold_compile:
        embedder.compile_image_model()
    embedder.image_features(random_pixels(embedder))  # the first call: kernels chosen, graph compiled
    sync = _sync_for(embedder)
    sync()
    model_ready_s = time.perf_counter() - start
    if not overlap:
        batches = start_loader(paths, embedder.backend.preprocess, mode, args.batch_size, args.workers,
                               args.prefetch, embedder.device)
    first_s, first_rows, rows = 0.0, 0, 0
    for block in lagged_host_copies(embedder.image_features(pixels) for pixels in batches):
        rows += len(block)
        if not first_rows:
            first_s, first_rows = time.perf_counter() - start, rows
    sync()
    seconds = time.perf_counter() - start
    steady = (rows - first_rows) / (seconds - first_s) if rows > first_rows and seconds > first_s else None
    pass_s = seconds - model_ready_s
    del embedder
    import gc
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {"images": rows, "seconds": round(seconds, 3), "images_per_s": round(rows / seconds, 1),
            "model_ready_s": round(model_ready_s, 3), "first_batch_s": round(first_s, 3),
            "pass_seconds": round(pass_s, 3), "pass_images_per_s": round(rows / pass_s, 1),
            "steady_images_per_s": None if steady is None else round(steady, 1)}


def cold_figures(args: argparse.Namespace, paths: List[Path]) -> Dict[str, Any]:
    """`--cold`: serial then overlapped start-up, for each mode (page cache warm for both: the images
    were just written, or read by the warm passes)."""
    out: Dict[str, Dict[str, Any]] = {"serial": {}, "overlap": {}}
    standalone_preprocess(args.model_name)  # imports open_clip: not charged to the first timed pass
    for mode in decode_modes(args.cold):
        for kind in ("serial", "overlap"):
            out[kind][mode] = cold_pass(args, paths, mode, overlap=kind == "overlap")
            print(f"cold {kind} {mode}: {out[kind][mode]}", flush=True)
    best = max(out["overlap"], key=lambda m: out["overlap"][m]["images_per_s"])
    return {"cold": out, "cold_best_decode": best, "cold_images_per_s": out["overlap"][best]["images_per_s"],
            "cold_serial_images_per_s": out["serial"][best]["images_per_s"],
            "cold_pass_images_per_s": out["overlap"][best]["pass_images_per_s"],
            "cold_serial_pass_images_per_s": out["serial"][best]["pass_images_per_s"]}


def parse_args(argv: List[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="CPU-sized: 128 images of 96 px in batches of 32, 20k db rows")
    ap.add_argument("--model-name", default=None, help="open_clip architecture (default: the tiny CLIP)")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--image-size", type=int, default=384, help="side of the synthetic JPEGs (px)")
    ap.add_argument("--image-dir", default=None, help="embed the *.jpg here instead of synthetic images")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--decode", default=None, help="comma list of cpu, gpu, torchvision_cpu, each optionally "
                    "@SHARE: that share of the images decoded by PIL in the workers (embedder key cpu_decode_share), "
                    "e.g. gpu@0.3 (default: cpu,gpu with CUDA, else cpu); the top-level images_per_s is the fastest")
    ap.add_argument("--compile", action="store_true", help="torch.compile the image encoder (embedder key compile)")
    ap.add_argument("--image-weights", default="auto", help="embedder key image_weights: auto | float32 | bfloat16")
    ap.add_argument("--model-batches", type=int, default=20, help="timed batches of the model-only figure")
    ap.add_argument("--db-rows", type=int, default=200_000, help="faiss rows; 0 skips the search")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index-type", default="flat", help="flat | ivf | hnsw | pq | ivfpq")
    ap.add_argument("--cold", default=None, help="comma list of decode modes (as --decode) timed start-up "
                    "included, serial and overlapped (module docstring)")
    ap.add_argument("--cold-only", action="store_true", help="only the --cold passes, no warm breakdown")
    ap.add_argument("--cold-compile", action="store_true", help="compile the model inside the --cold passes "
                    "(default: eager there; --compile applies to the warm breakdown)")
    ap.add_argument("--prefetch", type=int, default=4, help="batches each worker decodes ahead (--cold passes)")
    args = ap.parse_args(argv)
    if args.toy:
        args.images, args.image_size, args.batch_size = 128, 96, 32
        args.db_rows, args.queries, args.model_batches = 20_000, 500, 3
    return args


def embedding_figures(embedder: ClipEmbedder, paths: List[Path], args: argparse.Namespace) -> Dict[str, Any]:
    """Model-only (eager, then compiled when asked), then decode-only and end to end for each mode."""
    model: Dict[str, Any] = {}
    if args.compile:
        model["model_only_eager"] = time_model(embedder, args.model_batches)
        eager = embedder.image_features(random_pixels(embedder)).float().cpu()
        embedder.compile_image_model()
    model["model_only"] = time_model(embedder, args.model_batches)
    if args.compile:  # the compiled graph must give the eager vectors (rows are unit vectors: 1 = same)
        compiled = embedder.image_features(random_pixels(embedder)).float().cpu()
        model["compiled_vs_eager_min_cosine"] = round(float((compiled * eager).sum(dim=1).min()), 5)
    rate = model["model_only"]["images_per_s"]
    by_mode: Dict[str, Dict[str, Any]] = {}
    for mode in decode_modes(args.decode):
        by_mode[mode] = time_mode(embedder, paths, args.workers, mode, rate)
        print(f"decode {mode}: {by_mode[mode]}", flush=True)
    best = max(by_mode, key=lambda m: by_mode[m]["images_per_s"])
    figures = {k: by_mode[best][k] for k in ("images", "embed_seconds", "images_per_s", "first_batch_s", "steady_images_per_s")}
    figures.update(best_decode=best, decode=by_mode, dim=embedder.dim, model_only_images_per_s=rate,
                   model_warmup_s=model["model_only"]["warmup_s"],
                   decode_only_images_per_s={m: f["decode_only"]["steady_images_per_s"] for m, f in by_mode.items()})
    if "model_only_eager" in model:
        figures["model_only_eager_images_per_s"] = model["model_only_eager"]["images_per_s"]
        figures["compiled_vs_eager_min_cosine"] = model["compiled_vs_eager_min_cosine"]
    for mode, fig in by_mode.items():
        figures[f"images_per_s_{mode}"] = fig["images_per_s"]
        figures[f"steady_images_per_s_{mode}"] = fig["steady_images_per_s"]
        figures[f"decode_only_images_per_s_{mode}"] = fig["decode_only"]["steady_images_per_s"]
    return figures


def main(argv: List[str]) -> Dict[str, Any]:
    args = parse_args(argv)
    decode_modes(args.decode)  # a bad --decode or --cold fails before minutes of image writing
    if args.cold is not None:
        decode_modes(args.cold)
    if args.cold_only and args.cold is None:
        raise SystemExit("--cold-only needs --cold MODES")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        paths = sorted(Path(args.image_dir).glob("*.jpg"))[: args.images] if args.image_dir else write_images(Path(tmp), args.images, args.image_size)
        write_s = round(time.perf_counter() - start, 1)
        cold = cold_figures(args, paths) if args.cold is not None else {}
        embedder = build_embedder(args)
        emb = {"dim": embedder.dim, "images": len(paths)} if args.cold_only else embedding_figures(embedder, paths, args)
    search = time_search(emb["dim"], args.db_rows, args.queries, args.k, {"type": args.index_type}) if args.db_rows else {}
    import torch

    result = {"model": args.model_name or "tiny_clip", "device": str(embedder.device), "batch_size": args.batch_size,
              "workers": args.workers, "image_size": args.image_size, "compile": bool(args.compile),
              "image_weights_dtype": str(embedder.image_dtype).replace("torch.", ""), **emb, **cold, **search,
              "image_write_s": write_s, "prefetch": args.prefetch,
              "cpu_threads": torch.get_num_threads(), "faiss_gpus": faiss_gpus(),
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
