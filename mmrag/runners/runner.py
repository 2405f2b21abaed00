"""The training runner: `python train.py` (one process) or `torchrun --nproc_per_node N train.py`
(DDP or FSDP2). One optimizer step is `runners/train_step.TrainStep`, the same step the benchmarks
time: AdamW (fused on CUDA) without decay on biases and norms, optional bf16 weights, autocast,
torch.compile, gradient accumulation, a registered lr schedule. The loss is read back to the host only
every `run.log_every` steps (and at checkpoints and the last step): `metrics.jsonl` holds one record
per such interval with the interval's mean loss. Checkpoints are atomic and resume to the same result.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mmrag.common.config import save_config
from mmrag.common.errors import ConfigError, DataFormatError, MissingPathError
from mmrag.common.jsonl import write_jsonl
from mmrag.common.registry import LR_SCHEDULES, RUNNERS
from mmrag.runners import checkpoint as ckpt
from mmrag.runners import distributed as dist_utils
from mmrag.runners import schedules  # noqa: F401  (registers the lr schedules)
from mmrag.runners.batch_plan import BatchPlan, check_divisible
from mmrag.runners.compilation import COMPILE_MODES, COMPILE_SCOPES, compile_model, uncompile_model, uses_cudagraphs
from mmrag.runners.train_step import DTYPES, OPTIMIZERS, TrainStep, build_on, build_optimizer, cast_weights

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"


class _StepSource(Dataset):
    """Item i = this process's collated micro-batches of optimizer step `first + i`."""

    def __init__(self, plan: BatchPlan, datasets, collate, first: int, total: int, rank: int, world: int, accum: int):
        self.plan, self.datasets, self.collate = plan, datasets, collate
        self.first, self.total, self.rank, self.world, self.accum = first, total, rank, world, accum

    def __len__(self) -> int:
        return self.total - self.first

    def __getitem__(self, i: int) -> List[Dict[str, torch.Tensor]]:
        micro = self.plan.micro_batches(self.first + i, self.rank, self.world, self.accum)
        return [self.collate(self.datasets[name], idx) for name, idx in micro]


class _Interval:
    """Loss of the steps since the last record, kept on the device until a record is due."""

    def __init__(self) -> None:
        self.loss, self.tokens, self.steps = 0.0, 0.0, 0

    def add(self, step_loss, global_units) -> None:
        self.loss, self.tokens, self.steps = self.loss + step_loss, self.tokens + global_units, self.steps + 1

    def read(self, ranks) -> Dict[str, float]:
        """Mean of the per-step losses (one host read; one all-reduce: each rank held its share)."""
        loss = torch.as_tensor(self.loss, dtype=torch.float32, device=ranks.device).reshape(1)
        total = float(dist_utils.all_reduce_sum(loss, ranks)[0])
        out = {"loss": total / self.steps, "steps": self.steps, "tokens": int(float(self.tokens))}
        self.__init__()
        return out


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every device's generator too


@RUNNERS.register("runner_base")
class Runner:
    DEFAULTS: Dict[str, Any] = {
        "runner": "runner_base",
        "task": None,
        "output_dir": "output/run",
        "seed": 42,
        "device": "auto",            # auto | cpu | cuda
        "distributed": "ddp",        # ddp | fsdp (FSDP2); several processes: torchrun --nproc_per_node N train.py
        "fsdp_frozen": "replicate",  # fsdp only: replicate | shard, the frozen weights (LLM, vision tower).
                                     # replicate: whole on every process (memory as under DDP), only the trained
                                     # weights, gradients and optimizer state sharded, and only they move each step;
                                     # shard: 1/N each, all-gathered twice a step (forward, backward): for frozen
                                     # weights that do not fit one device
        "amp": "no",                 # no | bf16 | fp16: autocast (fp16 adds a GradScaler)
        "param_dtype": None,         # null (as the model builds them) | float32 | bfloat16 | float16: every weight
        "trainable_dtype": None,     # null (= param_dtype) | float32 | bfloat16: the trained weights (fp32 = master weights)
        "compile": "none",           # none | layers | llm | model: torch.compile for training (runners/compilation.py)
        "compile_mode": "default",   # torch.compile mode; reduce-overhead = CUDA graphs, one per batch shape
        "batch_size": 8,             # global batch per optimizer step, over processes and accumulation
        "accum_grad_iters": 1,
        "optimizer": "adamw",        # adamw (fused on CUDA; no weight decay on biases, norms, 1-d weights)
        "init_lr": 1e-4,
        "min_lr": 1e-5,
        "warmup_lr": 0.0,
        "warmup_steps": 0,
        "lr_sched": "linear_warmup_cosine",
        "weight_decay": 0.05,
        "betas": [0.9, 0.999],
        "max_grad_norm": 1.0,        # 0: no clipping
        "max_epoch": 1,
        "iters_per_epoch": None,     # default: largest dataset / batch_size
        "max_steps": None,           # iteration-based: overrides max_epoch x iters_per_epoch
        "num_workers": 0,
        "log_every": 10,             # steps per metrics.jsonl record (mean loss of the interval): the loss is read
                                     # back to the host only then, at checkpoints and at the last step
        "save_every": 0,             # steps between checkpoints; 0: at the end of every epoch
        "keep_checkpoints": 2,
        "resume": None,              # null | auto | <checkpoint folder>
        "tensorboard": False,
        "evaluate": True,            # run the task's evaluation after training
        "progress": True,
    }
    CHOICES = {"amp": ("no", "bf16", "fp16"), "device": dist_utils.DEVICES, "distributed": dist_utils.STRATEGIES,
               "fsdp_frozen": dist_utils.FSDP_FROZEN,
               "compile": COMPILE_SCOPES, "compile_mode": COMPILE_MODES, "optimizer": OPTIMIZERS,
               "param_dtype": (None, *DTYPES), "trainable_dtype": (None, "float32", "bfloat16")}

    @classmethod
    def default_config(cls) -> Dict[str, Any]:
        return dict(cls.DEFAULTS)

    def __init__(self, cfg, task) -> None:
        self.cfg, self.task, self.run = cfg, task, cfg.run
        self.output_dir = Path(self.run.output_dir)
        self.validate(self.run)

    @classmethod
    def validate(cls, run) -> None:
        """Every allowed value checked before anything is built."""
        for key, allowed in cls.CHOICES.items():
            if run[key] not in allowed:
                shown = ", ".join("null" if a is None else a for a in allowed)
                raise ConfigError(f"run.{key}={run[key]!r} is not one of {shown}")
        LR_SCHEDULES.get(run.lr_sched)  # an unknown schedule fails here, before any model is built
        trained = run.trainable_dtype or run.param_dtype
        if run.amp == "fp16" and trained == "float16":
            raise ConfigError("run.amp='fp16' needs fp32 trained weights (GradScaler cannot unscale fp16 "
                              "gradients): set run.trainable_dtype=float32")
        for key in ("log_every", "accum_grad_iters", "batch_size"):
            if int(run[key]) < 1:
                raise ConfigError(f"run.{key}={run[key]!r} must be >= 1")

    # ---------------------------------------------------------------- setup
    def _build_inputs(self, device: torch.device):
        """The one place the runner asks the task for things: model, processor, datasets, collation.
        The model is created on `device` in `run.param_dtype` (a 7B model in seconds, not minutes)."""
        model = self._build_model(device)  # first: a missing weight path fails before any set-up
        processor = self.task.build_processor(self.cfg, model)  # tokenizer, template, images, collation
        datasets, ratios = self.task.build_train_datasets(self.cfg, processor)
        return model, datasets, ratios, self.task.collate_fn(processor)

    def _build_model(self, device: torch.device):
        """The task's model, created on `device` in `run.param_dtype`, trained weights in `run.trainable_dtype`."""
        with build_on(device, DTYPES[self.run.param_dtype or "float32"]):
            model = self.task.build_model(self.cfg)
        cast_weights(model, self.run.param_dtype, self.run.trainable_dtype)
        return model

    def _total_steps(self, sizes: Dict[str, int]) -> int:
        if self.run.max_steps:
            return int(self.run.max_steps)
        per_epoch = self.run.iters_per_epoch or max(1, max(sizes.values()) // self.run.batch_size)
        return int(per_epoch * self.run.max_epoch)

    def _resume_state(self) -> Optional[Dict[str, Any]]:
        if not self.run.resume:
            return None
        if self.run.resume == "auto":
            found = ckpt.list_checkpoints(self.output_dir)
            folder = found[-1] if found else None
        else:
            folder = Path(self.run.resume)
            if not folder.is_dir():
                raise MissingPathError(f"run.resume={folder} is not a checkpoint folder")
        if folder is None:
            return None
        state = ckpt.load_checkpoint(folder)
        log.info("resuming from %s at step %d", folder, state["step"])
        return state

    def _wrap(self, model, ranks):
        """DDP / FSDP2, then torch.compile of the wrapped modules (in place)."""
        fsdp = {"frozen": self.run.fsdp_frozen} if self.run.distributed == "fsdp" else {}
        if self.run.distributed == "fsdp" and self.run.trainable_dtype and self.run.param_dtype \
                and self.run.trainable_dtype != self.run.param_dtype:
            fsdp.update(param_dtype=DTYPES[self.run.param_dtype], reduce_dtype=DTYPES[self.run.trainable_dtype])
        wrapped = dist_utils.wrap(model, self.run.distributed, ranks, **fsdp)
        compiled = compile_model(model, self.run.compile, self.run.compile_mode)  # compiles at the first step
        if compiled:
            log.info("run.compile=%s: %d module(s) compiled, first %s", self.run.compile, len(compiled), compiled[0])
        return wrapped

    # ---------------------------------------------------------------- train
    def train(self) -> Dict[str, Any]:
        ranks = dist_utils.init_distributed(self.run.device, group_of_one=self.run.distributed == "fsdp")
        set_seed(self.run.seed)  # before building: frozen random weights must match on resume
        model, datasets, ratios, collate = self._build_inputs(ranks.device)
        accum = self.run.accum_grad_iters
        check_divisible(self.run.batch_size, ranks.world, accum)
        sizes = {n: len(d) for n, d in datasets.items()}
        total = self._total_steps(sizes)
        plan = BatchPlan(sizes, ratios, self.run.batch_size, total, self.run.seed)
        state = self._resume_state()
        if state is not None:
            model.load_state_dict(state["trainable"], strict=False)  # before wrapping: FSDP then shards it
        wrapped = self._wrap(model, ranks)
        step_fn = self._train_step(wrapped, total, ranks, state)
        start = int(state["step"]) if state else 0
        if ranks.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.output_dir)
            drop_records_after(self.output_dir / METRICS, start)
        source = _StepSource(plan, datasets, collate, start, total, ranks.rank, ranks.world, accum)
        # its own generator: creating the loader's iterator must not draw from the global RNG,
        # which dropout uses and a resumed run restores
        loader = DataLoader(source, batch_size=None, shuffle=False, num_workers=self.run.num_workers,
                            pin_memory=ranks.device.type == "cuda",
                            generator=torch.Generator().manual_seed(self.run.seed + start))
        history = self._loop(wrapped, model, step_fn, loader, start, total, ranks)
        result = {"steps": total, "history": history, "rank": ranks.rank, "world_size": ranks.world}
        result.update(self._finish(wrapped, model, step_fn, ranks))
        return result

    def _train_step(self, wrapped, total: int, ranks, state) -> TrainStep:
        """The optimizer, schedule and step on the wrapped model; restored from `state` when resuming."""
        run = self.run
        optimizer = build_optimizer(wrapped, run.optimizer, run.init_lr, run.weight_decay, run.betas)
        scheduler = LR_SCHEDULES.get(run.lr_sched)(optimizer, total, run.warmup_steps, run.init_lr, run.min_lr,
                                                   run.warmup_lr)
        if state is not None:
            ckpt.set_optimizer_state(wrapped, optimizer, state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            ckpt.set_rng_state(state["rng_tensors"], state["rng"])  # last: nothing after it draws
        cudagraphs = run.compile != "none" and uses_cudagraphs(run.compile_mode)
        return TrainStep(wrapped, optimizer, scheduler, amp=run.amp, max_grad_norm=run.max_grad_norm,
                         world=ranks.world, cudagraphs=cudagraphs)

    def _global_units(self, micro_batches, model, ranks):
        """Target tokens in the global batch: a host number on one process, else a device tensor summed
        over processes (queued, never read here: the loss is divided by it on the device)."""
        units = float(sum(model.loss_units(b) for b in micro_batches))
        if ranks.world == 1:
            return units
        local = torch.tensor([units])
        local = local.pin_memory() if ranks.device.type == "cuda" else local
        return dist_utils.all_reduce_sum(local.to(ranks.device, non_blocking=True), ranks)[0]

    def _loop(self, wrapped, model, step_fn: TrainStep, loader, start: int, total: int, ranks) -> List[Dict[str, Any]]:
        history, writer, interval = [], self._tensorboard(ranks), _Interval()
        bar = tqdm(total=total, initial=start, desc="train", disable=not (ranks.is_main and self.run.progress))
        wrapped.train()
        t0 = time.time()
        for step, micro_batches in enumerate(loader, start=start):
            global_units = self._global_units(micro_batches, model, ranks)
            interval.add(step_fn(micro_batches, global_units) / global_units, global_units)
            bar.update(1)
            done, checkpoint = step + 1, self._checkpoint_due(step + 1, total)
            if done % self.run.log_every == 0 or checkpoint or done == total:
                record = {"step": done, **interval.read(ranks), "lr": step_fn.scheduler.get_last_lr()[0],
                          "elapsed_s": round(time.time() - t0, 3)}
                history.append(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}")
                if ranks.is_main:
                    self._log(record, writer, total)
            if checkpoint:
                self._checkpoint(wrapped, step_fn, done, ranks)
        bar.close()
        return history

    def _log(self, record: Dict[str, Any], writer, total: int) -> None:
        with open(self.output_dir / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")
        log.info("step %d/%d loss %.4f lr %.2e", record["step"], total, record["loss"], record["lr"])
        if writer is not None:
            writer.add_scalar("train/loss", record["loss"], record["step"])
            writer.add_scalar("train/lr", record["lr"], record["step"])

    def _tensorboard(self, ranks):
        if not (self.run.tensorboard and ranks.is_main):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.output_dir / "tensorboard"))

    def _checkpoint_due(self, step: int, total: int) -> bool:
        every = self.run.save_every or max(1, total // max(1, self.run.max_epoch))
        return step % every == 0 or step == total

    def _checkpoint(self, wrapped, step_fn: TrainStep, step: int, ranks) -> None:
        trainable = dist_utils.full_trainable_state(wrapped)  # collectives under FSDP: every rank
        optimizer_state = ckpt.full_optimizer_state(wrapped, step_fn.optimizer)
        if ranks.is_main:
            folder = self.output_dir / f"ckpt_step{step:08d}"
            ckpt.save_checkpoint(folder, trainable, optimizer_state, step_fn.scheduler.state_dict(), step)
            ckpt.prune(self.output_dir, self.run.keep_checkpoints)
        dist_utils.barrier(ranks)

    def _finish(self, wrapped, model, step_fn: TrainStep, ranks) -> Dict[str, Any]:
        """Save the final weights and evaluate on the main process. Under FSDP the weights are sharded:
        they are gathered, the sharded model dropped, and the main process rebuilds the model whole."""
        uncompile_model(model)  # evaluation generates: a growing KV cache would recompile
        out: Dict[str, Any] = {}
        if self.run.distributed == "fsdp":
            trainable = dist_utils.full_trainable_state(wrapped)
            del wrapped, model, step_fn.model, step_fn.optimizer
            model = self._rebuild(trainable, ranks) if ranks.is_main else None
        if ranks.is_main:
            dist_utils.unwrap(model).save_trainable(self.output_dir / "final")
            if self.run.evaluate:
                out["metrics"] = self.task.evaluate(dist_utils.unwrap(model), self.cfg, self.output_dir)
        dist_utils.shutdown(ranks)
        return out

    def _rebuild(self, trainable: Dict[str, torch.Tensor], ranks):
        import gc

        gc.collect()
        set_seed(self.run.seed)  # the same frozen random weights the trained model started from
        model = self._build_model(ranks.device)
        model.load_state_dict(trainable, strict=False)
        return model


def drop_records_after(metrics_file: Path, step: int) -> int:
    """Resuming from a checkpoint of `step`: drop the records of the steps after it (the killed run's,
    which this run writes again) and a last line cut short by the kill; rewritten atomically.
    Returns how many lines were dropped."""
    if not metrics_file.is_file():
        return 0
    lines = [line for line in metrics_file.read_text().splitlines() if line.strip()]
    rows = []
    for n, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if n != len(lines) - 1:  # only the last line can be cut short by a kill
                raise DataFormatError(f"{metrics_file}:{n + 1}: not valid JSON") from None
    kept = [r for r in rows if r["step"] <= step]
    if len(kept) != len(lines):
        write_jsonl(metrics_file, kept)
        log.info("%s: dropped %d line(s) after step %d (this run writes them again)", metrics_file,
                 len(lines) - len(kept), step)
    return len(lines) - len(kept)
