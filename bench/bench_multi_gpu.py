"""Benchmark the GeMKR training step on N GPUs of one host under DDP and FSDP: samples/s and scaling
efficiency against one GPU. Rank 0 prints one JSON line.

    torchrun --standalone --nproc_per_node 2 -m bench.bench_multi_gpu --strategy ddp,fsdp
    python -m bench.bench_multi_gpu --strategy single > one_gpu.json        # the 1-GPU figure alone
    torchrun --standalone --nproc_per_node 2 -m bench.bench_multi_gpu --baseline-json one_gpu.json
    torchrun --standalone --nproc_per_node 2 -m bench.bench_multi_gpu --toy  # CPU, gloo, tiny shapes, seconds

The model, the batch and the optimiser step are those of bench/bench_train_step.py (GeMKR at its real
shape, random weights, LoRA on q/v trainable, base frozen; recipe `ours` by default: bf16, SDPA, fused
AdamW, no per-step host read). Every rank trains on its own batch of `--batch` rows (default 12), so
the global batch is N x 12.

Strategies (`--strategy`, a comma list, run one after the other in the same launch):
  single  the plain model on this rank's GPU, no wrapper (with N = 1: the 1-GPU reference)
  ddp     DistributedDataParallel: full model per GPU, the trainable (LoRA, projector, prefix)
          gradients all-reduced in buckets during the backward
  ddp_dict_batch  ddp with the batch handed to the wrapper as a plain dict, as before runners/distributed.py's
          HostBatch: DDP copies its CPU tensors to the GPU (blocking) and the model's host-side checks
          then read GPU tensors (an A/B of that cost; `host_syncs` counts the waits)
  fsdp    FSDP2 (`torch.distributed.fsdp.fully_shard`): each LLM decoder layer is its own unit, the
          rest of the model (vision tower, projector, embeddings, head) the root unit; parameters,
          gradients and optimiser state sharded over the N ranks (run.fsdp_frozen=shard)
  fsdp_replicate  the same units with the frozen weights whole on every rank, only the trained ones
          sharded (run.fsdp_frozen=replicate, the runner's default)

Scaling efficiency = samples/s on N GPUs / (N x samples/s of one GPU). The 1-GPU figure comes from
`--baseline-json` (the JSON line of a 1-process run of this script, or of bench_train_step.py at the
same shape: its `recipes.<recipe>.samples_per_s`), or else rank 0 measures `single` first while the
other ranks wait. The slowest rank's mean step time sets the pace. NCCL settings come from the
environment as given (the machine keeps NVLink multicast off); nothing here changes them.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
import torch.distributed as dist
from torch import nn

from bench.bench_train_step import (Recipe, TrainStep, add_step_arguments, build_model, count_host_syncs,
                                    frozen_dtype, random_batch, recipes_from_args, shape_from_args, step_flops)
from mmrag.runners import distributed
from mmrag.runners.distributed import Ranks
from bench.common import (DTYPES, BenchError, StepTimer, emit, free_memory, machine_info,
                          peak_memory_gib, percentile_ms, reset_peak_memory, sync)

STRATEGIES = ("single", "ddp", "ddp_dict_batch", "fsdp", "fsdp_replicate")


def init_distributed(toy: bool, device_name: Optional[str]) -> Ranks:
    """Join the torchrun job, or form a process group of one (the runner's set-up, runners/distributed.py)."""
    if device_name == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: this machine has no CUDA device")
    device = "cpu" if toy or device_name == "cpu" else "auto"
    # rank 0 may build and time a 7B 1-GPU baseline while the others wait
    return distributed.init_distributed(device, group_of_one=True, timeout=timedelta(minutes=30))


def barrier(ranks: Ranks) -> None:
    distributed.barrier(ranks)


def wrap(model: nn.Module, strategy: str, recipe: Recipe, ranks: Ranks) -> nn.Module:
    """The runner's wrappers: DDP (static graph: the same every step) or FSDP2, one unit per decoder layer."""
    if strategy in ("ddp", "ddp_dict_batch"):
        return distributed.wrap_ddp(model, ranks, static_graph=True)
    if strategy in ("fsdp", "fsdp_replicate"):
        frozen, master = frozen_dtype(recipe, ranks.device), recipe.master_dtype
        # fp32 trainable weights next to bf16 frozen ones: gather in bf16, reduce in fp32
        mixed = {"param_dtype": DTYPES[frozen], "reduce_dtype": DTYPES[master]} if frozen != master else {}
        return distributed.wrap_fsdp(model, ranks, frozen="replicate" if strategy == "fsdp_replicate" else "shard",
                                     **mixed)
    return model


# ---------------------------------------------------------------------------------------------- timing

def _max_over_ranks(value: float, device: torch.device) -> float:
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def time_steps(step: TrainStep, batch: Dict[str, torch.Tensor], shape: Dict[str, Any],
               device: torch.device) -> Dict[str, Any]:
    """Warm-up steps, the host waits in one step (CUDA), then `steps` timed ones; per-step seconds of this
    rank and its last loss."""
    for _ in range(shape["warmup"]):
        step(batch)
    syncs = count_host_syncs(step, batch, device)
    timer, losses = StepTimer(device), []
    sync(device)
    timer.mark()
    for _ in range(shape["steps"]):
        losses.append(step(batch))
        timer.mark()
    seconds = timer.step_seconds()
    return {"seconds": seconds, "final_loss": float(torch.stack(losses)[-1].float()), "host_syncs": syncs}


def _local_numel(param: torch.Tensor) -> int:
    return param.to_local().numel() if hasattr(param, "to_local") else param.numel()  # FSDP2: a DTensor shard


def replica_figures(model: nn.Module, strategy: str, ranks: Ranks) -> Dict[str, Any]:
    """Share of the parameter elements this rank holds (about 1/N under FSDP, 1.0 otherwise) and, for
    DDP, whether the trainable weights are still bit-identical on every rank after the timed steps
    (each rank saw its own batch, so they are only if the gradients were all-reduced)."""
    params = list(model.parameters())
    out: Dict[str, Any] = {"local_param_share": round(sum(map(_local_numel, params)) / sum(p.numel() for p in params), 4)}
    if strategy.startswith("ddp") and ranks.world > 1:
        digest = sum(float(p.detach().double().square().sum()) for p in params if p.requires_grad)
        out["trainable_replicas_equal"] = _max_over_ranks(digest, ranks.device) == -_max_over_ranks(-digest, ranks.device)
    return out


def measure(strategy: str, shape: Dict[str, Any], recipe: Recipe, ranks: Ranks, world: int,
            peak_flops: float) -> Dict[str, Any]:
    """Build, wrap and time the training step on this rank; figures for `world` ranks in step (1 for single)."""
    start = time.perf_counter()
    model = build_model(shape, recipe, ranks.device)
    batch = random_batch(shape, model, ranks.device, DTYPES[frozen_dtype(recipe, ranks.device)], seed=ranks.rank)
    flops = step_flops(model, shape)["needed"]  # per rank, counted on the unsharded model
    wrapped = wrap(model, strategy, recipe, ranks)
    step = TrainStep(wrapped, recipe, ranks.device, world=world)
    if strategy == "ddp_dict_batch":
        step.step.hand_through = False  # the runner's TrainStep before HostBatch
    build_s = time.perf_counter() - start
    reset_peak_memory(ranks.device)
    timed = time_steps(step, batch, shape, ranks.device)
    mean = float(timed["seconds"].mean())
    if world > 1:
        mean = _max_over_ranks(mean, ranks.device)
    result = {"samples_per_s": round(world * shape["batch"] / mean, 3),
              "tokens_per_s": round(world * shape["batch"] * shape["seq_len"] / mean, 1),
              "step_ms_mean": round(mean * 1e3, 3), "step_ms_p50_rank0": percentile_ms(timed["seconds"], 50),
              "mfu": float(f"{flops / (mean * peak_flops):.4g}"), "peak_memory_gib": peak_memory_gib(ranks.device),
              "final_loss": round(timed["final_loss"], 4), "build_s": round(build_s, 2), "gpus": world,
              "host_syncs": timed["host_syncs"],
              **replica_figures(model, strategy, ranks)}
    if not torch.isfinite(torch.tensor(timed["final_loss"])):
        raise BenchError(f"strategy {strategy}: the loss became {timed['final_loss']}")
    del step, wrapped, model, batch
    free_memory(ranks.device)
    return result


def run_strategy(strategy: str, shape: Dict[str, Any], recipe: Recipe, ranks: Ranks, peak_flops: float) -> Dict[str, Any]:
    """measure() on every rank; an out-of-memory is the strategy's result instead of the end of the run."""
    world = 1 if strategy == "single" else ranks.world
    try:
        result = measure(strategy, shape, recipe, ranks, world, peak_flops)
    except torch.OutOfMemoryError as err:
        result = {"error": f"out of memory: {str(err).splitlines()[0]}"}
    free_memory(ranks.device)
    if strategy != "single" and ranks.world > 1 and "peak_memory_gib" in result and result["peak_memory_gib"] is not None:
        result["peak_memory_gib"] = _max_over_ranks(result["peak_memory_gib"], ranks.device)
    return result


# ---------------------------------------------------------------------------------------------- baseline

def baseline_from_json(path: str, shape: Dict[str, Any], recipe: Recipe) -> float:
    """Samples/s of one GPU from the last JSON line of a 1-process run of this script or bench_train_step.py."""
    lines = [line for line in Path(path).read_text().splitlines() if line.strip().startswith("{")]
    if not lines:
        raise BenchError(f"--baseline-json {path}: no JSON line in the file")
    record = json.loads(lines[-1])
    recorded = record.get("shape", {})
    for key in ("batch", "seq_len"):
        if recorded.get(key) not in (None, shape[key]):
            raise BenchError(f"--baseline-json {path}: shape.{key} = {recorded[key]}, this run uses {shape[key]}")
    if record.get("bench") == "multi_gpu":
        if record.get("world_size") != 1:
            raise BenchError(f"--baseline-json {path}: world_size = {record.get('world_size')}; expected a 1-GPU run")
        runs = record.get("strategies", {})
        figure = runs.get("single", {}).get("samples_per_s") or max(fig.get("samples_per_s", 0.0) for fig in runs.values())
    else:
        figure = record.get("recipes", {}).get(recipe.name, {}).get("samples_per_s", 0.0)
    if not figure:
        raise BenchError(f"--baseline-json {path}: no samples_per_s for recipe {recipe.name} in its last JSON line")
    return float(figure)


def inline_baseline(shape: Dict[str, Any], recipe: Recipe, ranks: Ranks, peak_flops: float) -> Dict[str, Any]:
    """Rank 0 times the plain model alone while the other ranks wait; every rank gets the figures."""
    result: List[Any] = [None]
    if ranks.rank == 0:
        result[0] = run_strategy("single", shape, recipe, ranks, peak_flops)
        print(f"single (rank 0 alone): {result[0]}", flush=True)
    barrier(ranks)
    dist.broadcast_object_list(result, src=0, device=ranks.device if ranks.backend == "nccl" else None)
    return result[0]


# ---------------------------------------------------------------------------------------------- main

def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="tiny shapes on the CPU with gloo (seconds)")
    ap.add_argument("--strategy", default="ddp,fsdp", help=f"comma list of {', '.join(STRATEGIES)}")
    ap.add_argument("--recipe", default="ours", choices=["ours", "ours_fp32_master"])
    ap.add_argument("--baseline-json", default=None, help="1-GPU JSON line (this script with 1 process, or "
                    "bench_train_step.py); default: rank 0 measures the plain model first")
    ap.add_argument("--no-baseline", action="store_true", help="skip the 1-GPU figure (no scaling efficiency)")
    add_step_arguments(ap)
    args = ap.parse_args(argv)
    args.recipes = args.recipe  # the names bench_train_step's helpers read
    return args


def strategies_from_args(text: str) -> List[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise BenchError(f"--strategy {text!r}: unknown {unknown}; expected a comma list of {list(STRATEGIES)}")
    return names


def one_gpu_figure(args, strategies: List[str], shape: Dict[str, Any], recipe: Recipe, ranks: Ranks,
                   peak_flops: float) -> Dict[str, Any]:
    """The 1-GPU samples/s to compare with (measured first, unless given or measured as `single` of a
    1-process run later), and where it came from."""
    if args.baseline_json:
        return {"samples_per_s": baseline_from_json(args.baseline_json, shape, recipe), "source": args.baseline_json}
    if "single" in strategies and ranks.world == 1:
        return {"source": "single, this run"}  # filled in once `single` has run
    single = inline_baseline(shape, recipe, ranks, peak_flops)
    return {"samples_per_s": single.get("samples_per_s"), "source": "single on rank 0, this run", **single}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    strategies, shape = strategies_from_args(args.strategy), shape_from_args(args)
    recipe = recipes_from_args(args)[0]
    ranks = init_distributed(args.toy, args.device)
    peak_flops = args.peak_tflops * 1e12
    torch.manual_seed(0)
    baseline = None if args.no_baseline else one_gpu_figure(args, strategies, shape, recipe, ranks, peak_flops)
    figures: Dict[str, Any] = {}
    for strategy in strategies:
        figures[strategy] = run_strategy(strategy, shape, recipe, ranks, peak_flops)
        if ranks.rank == 0:
            print(f"{strategy} on {figures[strategy].get('gpus', '?')} rank(s): {figures[strategy]}", flush=True)
    if baseline and baseline.get("source") == "single, this run":
        baseline.update(figures["single"])
    for strategy, fig in figures.items():
        if baseline and baseline.get("samples_per_s") and "samples_per_s" in fig:
            fig["speedup_vs_1gpu"] = round(fig["samples_per_s"] / baseline["samples_per_s"], 3)
            fig["scaling_efficiency"] = round(fig["speedup_vs_1gpu"] / fig["gpus"], 3)
    result = {"bench": "multi_gpu", "toy": args.toy, **machine_info(ranks.device), "world_size": ranks.world,
              "backend": ranks.backend, "nccl_nvls_enable": os.environ.get("NCCL_NVLS_ENABLE"),
              "per_gpu_batch": shape["batch"], "global_batch": ranks.world * shape["batch"], "shape": shape,
              "recipe": asdict(recipe), "peak_tflops": args.peak_tflops, "baseline_1gpu": baseline,
              "strategies": figures}
    if ranks.rank == 0:
        emit(result)
    barrier(ranks)
    distributed.shutdown(ranks)
    return result


if __name__ == "__main__":
    main()
