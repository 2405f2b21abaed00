"""Where the GeMKR training step spends its time: a torch.profiler trace of a few steps of one recipe,
summarised by operator (self device time) and by kind (matmul, attention, other).

    python -m bench.bench_profile_train_step --toy                  # CPU, tiny shapes, seconds
    python -m bench.bench_profile_train_step --recipe ours          # GPU: the real shapes of bench_train_step.py
    python -m bench.bench_profile_train_step --recipe ours@llm --warmup 4      # the compiled step

`--recipe` takes one recipe of bench_train_step.py, compilation included (`ours@llm:reduce-overhead`,
or --compile-scope / --compile-mode / --inductor-flags). Prints the top operators, then one JSON line:
`total_ms_per_step`, `share` by kind (matmul, attention, `compiled`: the kernels inductor generated,
i.e. the fused elementwise/norm/copy glue; other), `top_ops`, `settings`.
"""
from __future__ import annotations

import argparse
from typing import Any, Dict, List, Optional

import torch
from torch.profiler import ProfilerActivity, profile

from bench.bench_train_step import (TrainStep, add_step_arguments, build_model, frozen_dtype,
                                    random_batch, recipe_settings, recipes_from_args, shape_from_args)
from bench.common import DTYPES, BenchError, emit, machine_info, pick_device, sync

# operator-name fragments per kind (aten op names and CUDA kernel names both appear in a trace),
# checked in this order: cuDNN's attention kernels also contain "wgmma"; inductor's matmul templates
# are "triton_tem_*", its other kernels "triton_{poi,red,per}_fused_<ops>" (whose op list may name mm)
# (on the CPU a compiled graph is one "## Call CompiledFxGraph <hash> ##" event, the hash random letters)
KINDS = (("matmul", ("triton_tem",)),
         ("compiled", ("compiledfxgraph",)),
         ("attention", ("attention", "flash", "fmha", "sdpa", "softmax")),
         ("compiled", ("triton_",)),
         ("matmul", ("mm", "gemm", "linear", "matmul", "cutlass", "xmma", "nvjet")))


def kind_of(name: str) -> str:
    low = name.lower()
    for kind, fragments in KINDS:
        if any(f in low for f in fragments):
            return kind
    return "other"


def summarise(events, steps: int, device_type: str, top: int) -> Dict[str, Any]:
    """Self time per operator (device time on a GPU, CPU time on the CPU), per step, and shares by kind."""
    if device_type == "cuda":
        # GPU kernels only: an aten op's device time is its kernels' time, counting both would count twice
        events = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        attr = "self_device_time_total"
    else:
        attr = "self_cpu_time_total"
    rows = sorted(((e.key, getattr(e, attr, 0.0) or 0.0, e.count) for e in events), key=lambda r: -r[1])
    total = sum(t for _, t, _ in rows) or 1.0
    share: Dict[str, float] = {}
    for name, t, _ in rows:
        share[kind_of(name)] = share.get(kind_of(name), 0.0) + t / total
    top_ops = [{"op": name, "ms_per_step": round(t / 1e3 / steps, 3), "share": round(t / total, 4),
                "calls_per_step": round(n / steps, 1)} for name, t, n in rows[:top]]
    return {"total_ms_per_step": round(total / 1e3 / steps, 3),
            "share": {k: round(v, 4) for k, v in sorted(share.items())}, "top_ops": top_ops}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="tiny shapes on the CPU (seconds)")
    ap.add_argument("--recipe", default="ours",
                    help="reference, ours or ours_fp32_master, optionally RECIPE@SCOPE[:MODE][+FLAG]")
    ap.add_argument("--top", type=int, default=20, help="operators listed")
    add_step_arguments(ap)
    args = ap.parse_args(argv)
    args.recipes = args.recipe  # the name bench_train_step's helpers read
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    device = pick_device("cpu" if args.toy and args.device is None else args.device)
    recipes = recipes_from_args(args)
    if len(recipes) != 1:
        raise BenchError(f"--recipe {args.recipe!r}: one recipe per profile")
    shape, recipe = shape_from_args(args), recipes[0]
    torch.manual_seed(0)
    model = build_model(shape, recipe, device)
    batch = random_batch(shape, model, device, DTYPES[frozen_dtype(recipe, device)])
    step = TrainStep(model, recipe, device)
    for _ in range(shape["warmup"]):
        step(batch)
    sync(device)
    activities: List[ProfilerActivity] = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        for _ in range(shape["steps"]):
            step(batch)
        sync(device)
    summary = summarise(prof.key_averages(), shape["steps"], device.type, args.top)
    for row in summary["top_ops"]:
        print(f"{row['share']:7.2%} {row['ms_per_step']:9.3f} ms/step {row['calls_per_step']:7.1f} calls  {row['op'][:90]}")
    result = {"bench": "profile_train_step", "toy": args.toy, **machine_info(device), "recipe": recipe.name,
              "settings": recipe_settings(recipe, device, model), "shape": shape, **summary}
    emit(result)
    return result


if __name__ == "__main__":
    main()
