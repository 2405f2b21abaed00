"""The training runner: accelerate (CPU/GPU, fp32/bf16/fp16, DDP/FSDP), gradient accumulation,
AdamW without decay on biases and norms, a registered lr schedule, tqdm, a JSON-lines metrics log,
optional TensorBoard, and atomic checkpoints that resume to the same result.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mmrag.common.config import ConfigError, save_config
from mmrag.common.registry import LR_SCHEDULES, RUNNERS
from mmrag.runners import checkpoint as ckpt
from mmrag.runners.batch_plan import BatchPlan, check_divisible
from mmrag.runners.compilation import compile_model, uncompile_model

log = logging.getLogger(__name__)


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


def param_groups(model: torch.nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on biases, norms and 1-d parameters (gates, scales)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@RUNNERS.register("runner_base")
class Runner:
    DEFAULTS: Dict[str, Any] = {
        "runner": "runner_base",
        "task": None,
        "output_dir": "output/run",
        "seed": 42,
        "amp": "no",                 # no | bf16 | fp16
        "device": "auto",            # auto | cpu
        "distributed": "ddp",        # ddp | fsdp (multi-process via accelerate launch / torchrun)
        "batch_size": 8,             # global batch per optimizer step, over processes and accumulation
        "accum_grad_iters": 1,
        "optimizer": "adamw",
        "init_lr": 1e-4,
        "min_lr": 1e-5,
        "warmup_lr": 0.0,
        "warmup_steps": 0,
        "lr_sched": "linear_warmup_cosine",
        "weight_decay": 0.05,
        "betas": [0.9, 0.999],
        "max_grad_norm": 1.0,
        "max_epoch": 1,
        "iters_per_epoch": None,     # default: largest dataset / batch_size
        "max_steps": None,           # iteration-based: overrides max_epoch x iters_per_epoch
        "num_workers": 0,
        "log_every": 10,             # steps between loss lines in the log (metrics.jsonl gets every step)
        "save_every": 0,             # steps between checkpoints; 0: at the end of every epoch
        "keep_checkpoints": 2,
        "resume": None,              # null | auto | <checkpoint folder>
        "tensorboard": False,
        "evaluate": True,            # run the task's evaluation after training
        "progress": True,
        "compile": "none",           # none | layers | llm | model: torch.compile for training (runners/compilation.py)
    }

    @classmethod
    def default_config(cls) -> Dict[str, Any]:
        return dict(cls.DEFAULTS)

    CHOICES = {"amp": ("no", "bf16", "fp16"), "device": ("auto", "cpu"), "distributed": ("ddp", "fsdp"),
               "compile": ("none", "layers", "llm", "model")}

    def __init__(self, cfg, task) -> None:
        self.cfg, self.task, self.run = cfg, task, cfg.run
        self.output_dir = Path(self.run.output_dir)
        for key, allowed in self.CHOICES.items():
            if self.run[key] not in allowed:
                raise ConfigError(f"run.{key}={self.run[key]!r} is not one of {', '.join(allowed)}")
        LR_SCHEDULES.get(self.run.lr_sched)  # an unknown schedule fails here, before any model is built
        if self.run.compile != "none" and self.run.distributed == "fsdp":
            # FSDP re-registers the LLM's weights as views of its flat buffers; not tried under compile
            raise ConfigError(f"run.compile={self.run.compile!r} is not supported with run.distributed='fsdp'")

    # ---------------------------------------------------------------- setup
    def _accelerator(self):
        from accelerate import Accelerator
        from accelerate.utils import FullyShardedDataParallelPlugin

        fsdp = FullyShardedDataParallelPlugin() if self.run.distributed == "fsdp" else None
        cpu = self.run.device == "cpu" or not torch.cuda.is_available()
        return Accelerator(mixed_precision=self.run.amp, cpu=cpu, fsdp_plugin=fsdp)

    def _total_steps(self, sizes: Dict[str, int]) -> int:
        if self.run.max_steps:
            return int(self.run.max_steps)
        per_epoch = self.run.iters_per_epoch or max(1, max(sizes.values()) // self.run.batch_size)
        return int(per_epoch * self.run.max_epoch)

    def _resume_folder(self) -> Optional[Path]:
        if not self.run.resume:
            return None
        if self.run.resume == "auto":
            found = ckpt.list_checkpoints(self.output_dir)
            return found[-1] if found else None
        folder = Path(self.run.resume)
        if not folder.is_dir():
            raise FileNotFoundError(f"run.resume={folder} is not a checkpoint folder")
        return folder

    # ---------------------------------------------------------------- train
    def train(self) -> Dict[str, Any]:
        from accelerate.utils import set_seed

        set_seed(self.run.seed)  # before building: frozen random weights must match on resume
        model = self.task.build_model(self.cfg)  # first: a missing weight path fails before any set-up
        datasets, ratios = self.task.build_train_datasets(self.cfg, model)
        acc = self._accelerator()
        world, accum = acc.num_processes, self.run.accum_grad_iters
        check_divisible(self.run.batch_size, world, accum)
        sizes = {n: len(d) for n, d in datasets.items()}
        total = self._total_steps(sizes)
        plan = BatchPlan(sizes, ratios, self.run.batch_size, total, self.run.seed)
        optimizer = torch.optim.AdamW(param_groups(model, self.run.weight_decay), lr=self.run.init_lr,
                                      betas=tuple(self.run.betas))
        scheduler = LR_SCHEDULES.get(self.run.lr_sched)(
            optimizer, total, self.run.warmup_steps, self.run.init_lr, self.run.min_lr, self.run.warmup_lr)
        start = self._restore(model, optimizer, scheduler)
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.output_dir)
        model, optimizer = acc.prepare(model, optimizer)
        compiled = compile_model(acc.unwrap_model(model), self.run.compile)  # in place; compiles at the first step
        if compiled:
            log.info("run.compile=%s: %d module(s) compiled, first %s", self.run.compile, len(compiled), compiled[0])
        source = _StepSource(plan, datasets, self.task.collate_fn(acc.unwrap_model(model)), start, total,
                             acc.process_index, world, accum)
        # its own generator: creating the loader's iterator must not draw from the global RNG,
        # which dropout uses and a resumed run restores
        loader = DataLoader(source, batch_size=None, shuffle=False, num_workers=self.run.num_workers,
                            generator=torch.Generator().manual_seed(self.run.seed + start))
        history = self._loop(acc, model, optimizer, scheduler, loader, start, total)
        uncompile_model(acc.unwrap_model(model))  # evaluation generates: a growing KV cache would recompile
        acc.wait_for_everyone()
        result = {"steps": total, "history": history}
        if acc.is_main_process:
            acc.unwrap_model(model).save_trainable(self.output_dir / "final")
            if self.run.evaluate:
                result["metrics"] = self.task.evaluate(acc.unwrap_model(model), self.cfg, self.output_dir)
        acc.end_training()
        return result

    def _restore(self, model, optimizer, scheduler) -> int:
        folder = self._resume_folder()
        if folder is None:
            return 0
        state = ckpt.load_checkpoint(folder)
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng_tensors"], state["rng"])
        log.info("resumed from %s at step %d", folder, state["step"])
        return int(state["step"])

    def _micro_step(self, acc, model, batch, global_tokens: torch.Tensor, sync: bool) -> torch.Tensor:
        with acc.autocast():
            out = model(batch)
        # gradient of (sum of token losses / tokens in the GLOBAL batch); DDP averages over
        # processes, hence the x world: identical to one process reading the whole batch
        loss = out["loss_sum"] * acc.num_processes / global_tokens
        if sync:
            acc.backward(loss)
        else:
            with acc.no_sync(model):
                acc.backward(loss)
        return out["loss_sum"].detach()

    def _loop(self, acc, model, optimizer, scheduler, loader, start, total) -> List[Dict[str, float]]:
        history, writer = [], self._tensorboard(acc)
        bar = tqdm(total=total, initial=start, desc="train", disable=not (acc.is_main_process and self.run.progress))
        metrics_file = self.output_dir / "metrics.jsonl"
        model.train()
        t0 = time.time()
        for step, micro_batches in enumerate(loader, start=start):
            units = sum(acc.unwrap_model(model).loss_units(b) for b in micro_batches)
            global_tokens = acc.reduce(torch.as_tensor(units, dtype=torch.float32, device=acc.device), reduction="sum")
            loss_sum = sum(self._micro_step(acc, model, b, global_tokens, i == len(micro_batches) - 1)
                           for i, b in enumerate(micro_batches))
            if self.run.max_grad_norm:
                acc.clip_grad_norm_(model.parameters(), self.run.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss = float(acc.reduce(loss_sum, reduction="sum") / global_tokens)
            record = {"step": step + 1, "loss": loss, "lr": scheduler.get_last_lr()[0],
                      "tokens": int(global_tokens), "elapsed_s": round(time.time() - t0, 3)}
            history.append(record)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}")
            if acc.is_main_process:
                self._log(metrics_file, record, writer, step + 1)
                if self.run.log_every and (step + 1) % self.run.log_every == 0:
                    log.info("step %d/%d loss %.4f lr %.2e", step + 1, total, loss, record["lr"])
            self._maybe_checkpoint(acc, model, optimizer, scheduler, step + 1, total)
        bar.close()
        return history

    def _log(self, metrics_file: Path, record: Dict[str, float], writer, step: int) -> None:
        with open(metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None:
            writer.add_scalar("train/loss", record["loss"], step)
            writer.add_scalar("train/lr", record["lr"], step)

    def _tensorboard(self, acc):
        if not (self.run.tensorboard and acc.is_main_process):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.output_dir / "tensorboard"))

    def _maybe_checkpoint(self, acc, model, optimizer, scheduler, step: int, total: int) -> None:
        every = self.run.save_every or max(1, total // max(1, self.run.max_epoch))
        if step % every and step != total:
            return
        acc.wait_for_everyone()
        if acc.is_main_process:
            trainable = acc.unwrap_model(model).trainable_state()
            folder = self.output_dir / f"ckpt_step{step:08d}"
            ckpt.save_checkpoint(folder, trainable, optimizer.state_dict(), scheduler.state_dict(), step)
            ckpt.prune(self.output_dir, self.run.keep_checkpoints)
        acc.wait_for_everyone()
