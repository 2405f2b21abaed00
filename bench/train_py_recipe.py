"""The `runner` recipe of bench_train_step.py: the GeMKR training step timed through `python train.py`'s
own code path (mmrag.cli.train.main: the validated config system, the task, the Runner's loop with its
DataLoader, logging and checkpoint), on the same real-shape model from config dicts.

The task `bench_random_rows` serves rows of the bench's shape (random token ids, the visual
placeholders at IMAGE_AT, the last `target_tokens` as targets; random pixels and region features), so
the step sees what the bench's own recipes see; its `evaluation:` section holds that shape.
Timing: the Runner reads the loss back every `run.log_every` steps; with log_every = `steps` and the
warm-up rounded up to a multiple of it, the records at the end of the warm-up and at the last step
give the wall time of `steps` steps (host reads, data loading and all): the figure `python train.py`
reaches. The checkpoint at the last step is written after the last record, so it is not timed.

Run alone, it is the multi-GPU figure of `train.py` (issue 16): the same run under torchrun, DDP or
FSDP2 (`run.distributed`), `--batch-per-gpu` rows on every process (the runner's `batch_size` is the
global batch), rank 0 prints one JSON line with tokens/s of the whole job:

    python -m bench.train_py_recipe --llm-layers 8 --compile-scope model --compile-mode reduce-overhead
    torchrun --standalone --nproc_per_node 2 -m bench.train_py_recipe --distributed ddp --llm-layers 8 \
        --compile-scope model --compile-mode reduce-overhead
    torchrun --standalone --nproc_per_node 2 -m bench.train_py_recipe --distributed fsdp --llm-layers 8 \
        --compile-scope layers [--fsdp-frozen shard]
    torchrun --standalone --nproc_per_node 2 -m bench.train_py_recipe --toy   # CPU, gloo, seconds

`--llm-layers 8` makes the step short (~0.1 s on an H200), so any fixed per-step cost of the wrappers
weighs ~4x what it does at the full depth; a scaling figure should also be taken with `--llm-layers 32`
(the default, the model as trained) beside it.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from bench.bench_train_step import LR, add_step_arguments, base_recipes, gemkr_config, shape_from_args
from bench.common import emit, machine_info, pick_device
from bench.train_py_run import run_train_py
from mmrag.runners.distributed import FSDP_FROZEN


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="tiny shapes on the CPU (gloo under torchrun)")
    ap.add_argument("--distributed", default="ddp", choices=["ddp", "fsdp"], help="run.distributed")
    ap.add_argument("--fsdp-frozen", default="replicate", choices=list(FSDP_FROZEN),
                    help="run.fsdp_frozen: the frozen weights whole on every process, or sharded")
    ap.add_argument("--batch-per-gpu", dest="batch", type=int, default=None, help="rows per process (default 12)")
    ap.add_argument("--work-dir", default=None, help="shared run folder (default: a temp folder per job)")
    add_step_arguments(ap)
    ap.set_defaults(recipes="runner")
    args = ap.parse_args(argv)
    if args.compile_scope is None:
        args.compile_scope = "none"
    return args


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """One train.py run of the bench's GeMKR shape on this process's share of the job; rank 0 prints the
    JSON line: tokens/s = global batch x seq_len / step time (the gap between the last two records)."""
    args = parse_args(argv)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    device = pick_device("cpu" if args.toy and args.device is None else args.device)
    shape = shape_from_args(args)
    recipe = replace(base_recipes(args)["runner"], compile_scope=args.compile_scope, compile_mode=args.compile_mode)
    work_dir, made_dir = args.work_dir, False
    if work_dir is None and world > 1:  # every process must write the same run folder: one name per job
        work_dir = str(Path(tempfile.gettempdir()) / f"bench_train_py_{os.environ.get('TORCHELASTIC_RUN_ID', 'job')}")
        made_dir = True
    if work_dir:
        Path(work_dir).mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    start = time.perf_counter()
    timed = run_train_py(shape, gemkr_config(shape, recipe), recipe, LR, device, args.distributed, world, work_dir,
                         fsdp_frozen=args.fsdp_frozen)
    result = {"bench": "train_py", "toy": args.toy, "world_size": world, "distributed": args.distributed if world > 1 else "single",
              "fsdp_frozen": args.fsdp_frozen if args.distributed == "fsdp" else None,
              "compile_scope": recipe.compile_scope, "compile_mode": recipe.compile_mode,
              "batch_per_gpu": shape["batch"], "global_batch": shape["batch"] * world, "seq_len": shape["seq_len"],
              "llm_layers": shape["llm"]["num_hidden_layers"], "steps_timed": shape["steps"],
              "step_ms": round(timed["step_s"] * 1e3, 3),
              "samples_per_s": round(shape["batch"] * world / timed["step_s"], 3),
              "tokens_per_s": round(shape["batch"] * world * shape["seq_len"] / timed["step_s"], 1),
              "final_loss": round(timed["final_loss"], 4), "first_record_s": timed["first_record_s"],
              "wall_s": round(time.perf_counter() - start, 1), **machine_info(device)}
    if rank == 0:
        emit(result)
        if made_dir:  # the run's checkpoint: nobody reads it after the timing
            import shutil

            shutil.rmtree(work_dir, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
