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
        --compile-scope layers
    torchrun --standalone --nproc_per_node 2 -m bench.train_py_recipe --toy   # CPU, gloo, seconds
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from mmrag.common.registry import TASKS
from mmrag.processors.tokenization import IGNORE_INDEX, IMAGE_PLACEHOLDER_ID
from mmrag.tasks.base import Task


class RandomRows(Dataset):
    def __init__(self, shape: Dict[str, Any], n_visual: int, vocab: int) -> None:
        self.shape, self.n_visual, self.vocab = shape, n_visual, vocab
        self.name = "random_rows"

    def __len__(self) -> int:
        return int(self.shape["rows"])

    def __getitem__(self, i: int) -> Dict[str, torch.Tensor]:
        s, gen = self.shape, torch.Generator().manual_seed(i)
        ids = torch.randint(3, self.vocab, (s["seq_len"],), generator=gen)
        ids[0], ids[-1] = 1, 2
        ids[s["image_at"]:s["image_at"] + self.n_visual] = IMAGE_PLACEHOLDER_ID
        labels = torch.full_like(ids, IGNORE_INDEX)
        labels[-s["target_tokens"]:] = ids[-s["target_tokens"]:]
        size = s["image_size"]
        return {"input_ids": ids, "labels": labels, "pixel_values": torch.randn(3, size, size, generator=gen),
                "regions": torch.randn(s["regions"], s["region_dim"], generator=gen)}


@TASKS.register("bench_random_rows")
class RandomRowsTask(Task):
    DEFAULTS: Dict[str, Any] = {"run": {}, "evaluation": {"rows": 4096, "seq_len": 360, "target_tokens": 20,
                                                           "image_at": 32, "image_size": 224, "regions": 10,
                                                           "region_dim": 1024}}

    def build_processor(self, cfg, model):
        return model  # rows are already token ids: nothing to tokenize

    def build_train_datasets(self, cfg, model):
        lm = model.llm.get_base_model() if hasattr(model.llm, "get_base_model") else model.llm
        rows = RandomRows(OmegaConf.to_container(cfg.evaluation), model.num_visual_tokens, lm.config.vocab_size)
        return {"random_rows": rows}, {"random_rows": 1.0}

    def collate_fn(self, processor):
        def collate(dataset, indices):
            rows = [dataset[i] for i in indices]
            batch = {k: torch.stack([r[k] for r in rows]) for k in rows[0]}
            batch["attention_mask"] = torch.ones_like(batch["input_ids"])
            return batch

        return collate

    def evaluate(self, model, cfg, out_dir):
        return {}


def run_config(shape: Dict[str, Any], model_cfg: Dict[str, Any], recipe, out_dir: Path, lr: float,
               device: torch.device, distributed: str = "ddp", world: int = 1) -> Dict[str, Any]:
    """The experiment YAML's content: the bench's model, run options equal to recipe `ours`."""
    steps, warmup = shape["steps"], math.ceil(shape["warmup"] / shape["steps"]) * shape["steps"]
    evaluation = {"seq_len": shape["seq_len"], "target_tokens": shape["target_tokens"], "image_at": 32,
                  "image_size": shape["vision"]["image_size"], "regions": shape["prefix"]["regions"],
                  "region_dim": shape["vision"]["hidden_size"], "rows": shape["batch"] * (warmup + steps)}
    run = {"task": "bench_random_rows", "output_dir": str(out_dir), "batch_size": shape["batch"] * world,
           "max_steps": warmup + steps, "log_every": steps, "save_every": warmup + steps, "keep_checkpoints": 1,
           "param_dtype": "bfloat16", "amp": "no", "init_lr": lr, "min_lr": lr, "warmup_steps": 0,
           "compile": recipe.compile_scope, "compile_mode": recipe.compile_mode, "num_workers": 4,
           "evaluate": False, "progress": False, "device": device.type, "distributed": distributed}
    evaluation["rows"] *= world
    return {"model": model_cfg, "datasets": {}, "run": run, "evaluation": evaluation}


def run_train_py(shape: Dict[str, Any], model_cfg: Dict[str, Any], recipe, lr: float,
                 device: torch.device, distributed: str = "ddp", world: int = 1,
                 work_dir: Optional[str] = None) -> Dict[str, Any]:
    """Train through mmrag.cli.train.main (what `python train.py --cfg-path X.yaml` runs); the timing.
    Under torchrun every process calls this with the same `work_dir` (a shared folder for the run)."""
    from mmrag.cli.train import main as train_main

    with tempfile.TemporaryDirectory() as own_tmp:
        tmp = work_dir or own_tmp
        cfg = run_config(shape, model_cfg, recipe, Path(tmp) / "run", lr, device, distributed, world)
        path = Path(tmp) / f"bench_runner_{os.environ.get('RANK', '0')}.yaml"
        OmegaConf.save(OmegaConf.create(cfg), path)
        result = train_main(["--cfg-path", str(path)])
    records = result["history"]
    if len(records) < 2:
        raise RuntimeError(f"the runner wrote {len(records)} record(s); expected warm-up and timed ones")
    seconds = (records[-1]["elapsed_s"] - records[-2]["elapsed_s"]) / records[-1]["steps"]
    return {"step_s": seconds, "final_loss": records[-1]["loss"], "first_record_s": records[0]["elapsed_s"],
            "run": cfg["run"]}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    from bench.bench_train_step import add_step_arguments

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--toy", action="store_true", help="tiny shapes on the CPU (gloo under torchrun)")
    ap.add_argument("--distributed", default="ddp", choices=["ddp", "fsdp"], help="run.distributed")
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
    from bench.bench_train_step import LR, base_recipes, gemkr_config, shape_from_args
    from bench.common import emit, machine_info, pick_device

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
    timed = run_train_py(shape, gemkr_config(shape, recipe), recipe, LR, device, args.distributed, world, work_dir)
    result = {"bench": "train_py", "toy": args.toy, "world_size": world, "distributed": args.distributed if world > 1 else "single",
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
