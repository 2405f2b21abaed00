"""The training step: one implementation for the runner (`python train.py`) and the benchmarks.

- `build_optimizer`: AdamW over two parameter groups (no weight decay on biases, norms and other 1-d
  parameters), fused on CUDA (one kernel for all parameters instead of a loop of small ones).
- `cast_weights`: the weights' dtypes (`run.param_dtype` for every weight, `run.trainable_dtype` for
  the trained ones: bf16 weights are what the fast recipe trains with; fp32 trained weights are
  "master weights" for runs whose bf16 updates would be lost to rounding).
- `TrainStep`: one optimizer step over this process's micro-batches: autocast, GradScaler (fp16),
  gradient sync only on the last micro-batch (DDP and FSDP2), clipping, optimizer and scheduler step.
  A DDP / FSDP2 model gets each batch as a `HostBatch`: the wrapper does not copy it to the device
  (blocking copies), the model reads it as in one process.
  It returns the loss as a device tensor and never reads it on the host: the caller decides when to
  pay for that sync (the runner: every `log_every` steps).
"""
from __future__ import annotations

import contextlib
from contextlib import nullcontext
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import torch
from torch import nn

from mmrag.common.errors import ConfigError
from mmrag.runners.distributed import HostBatch, is_wrapped

OPTIMIZERS = ("adamw",)
AMP_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """Trainable parameters in two groups: no weight decay on biases, norms and 1-d parameters (gates, scales)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fused_available(model: nn.Module) -> bool:
    """Fused AdamW by default where it pays: every trainable parameter on a CUDA device."""
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(p.device.type == "cuda" for p in params)


def build_optimizer(model: nn.Module, name: str = "adamw", lr: float = 1e-4, weight_decay: float = 0.0,
                    betas: Sequence[float] = (0.9, 0.999), fused: Optional[bool] = None) -> torch.optim.Optimizer:
    """The optimizer `run.optimizer` names; `fused=None` picks fused AdamW when the weights are on CUDA."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"run.optimizer={name!r} is not one of {', '.join(OPTIMIZERS)}")
    groups = param_groups(model, weight_decay)
    if not any(g["params"] for g in groups):
        raise ConfigError("the model has no trainable parameters (check model.lora / model.llm.freeze)")
    fused = fused_available(model) if fused is None else fused
    # foreach (one multi-tensor loop) is torch's default where fused is not used
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=fused or None)


def cast_weights(model: nn.Module, param_dtype: Optional[str], trainable_dtype: Optional[str]) -> None:
    """Every weight to `param_dtype`, then the trained ones to `trainable_dtype` (None: leave as built)."""
    if param_dtype:
        model.to(DTYPES[param_dtype])
    if trainable_dtype:
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.to(DTYPES[trainable_dtype])


@contextlib.contextmanager
def build_on(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Create tensors directly on `device` in `dtype` (a 7B model initialised on the GPU in bf16 takes
    seconds; on the CPU in fp32 it would take minutes and 27 GB). Restores the defaults afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _grad_sync(model: nn.Module, sync: bool):
    """Skip the gradient all-reduce / reduce-scatter on all but the last micro-batch of a step."""
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
        return nullcontext()
    if not sync and hasattr(model, "no_sync"):  # DDP
        return model.no_sync()
    return nullcontext()


class TrainStep:
    """One optimizer step over this process's micro-batches.

    The loss is the sum of token losses over the GLOBAL batch divided by the global number of target
    tokens (`global_units`); DDP and FSDP average gradients over processes, hence the x `world`: the
    gradient equals that of one process reading the whole batch. Returns this process's loss sum
    over its micro-batches (a detached device tensor; no host read).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler=None, *, amp: str = "no",
                 max_grad_norm: float = 0.0, world: int = 1, cudagraphs: bool = False) -> None:
        if amp not in AMP_DTYPES:
            raise ConfigError(f"run.amp={amp!r} is not one of {', '.join(AMP_DTYPES)}")
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.device_type = next(p for p in model.parameters()).device.type
        self.amp_dtype = AMP_DTYPES[amp]
        self.scaler = torch.amp.GradScaler(self.device_type) if amp == "fp16" else None
        self.max_grad_norm, self.world, self.cudagraphs = max_grad_norm, world, cudagraphs
        self.hand_through = is_wrapped(model)

    def _autocast(self):
        return torch.autocast(self.device_type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()

    def _backward(self, batch: Dict[str, torch.Tensor], global_units: Union[float, torch.Tensor],
                  sync: bool) -> torch.Tensor:
        with _grad_sync(self.model, sync):
            with self._autocast():
                out = self.model(HostBatch(batch) if self.hand_through else batch)
            loss = out["loss_sum"] * self.world / global_units
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return out["loss_sum"].detach().float()

    def __call__(self, micro_batches: Sequence[Dict[str, torch.Tensor]],
                 global_units: Union[float, torch.Tensor]) -> torch.Tensor:
        if self.cudagraphs:  # the last step's graph outputs (its gradients, long applied) may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        loss_sum = sum(self._backward(b, global_units, i == len(micro_batches) - 1)
                       for i, b in enumerate(micro_batches))
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.max_grad_norm:
            # in the model's parameter order: the total norm sums per-tensor norms in this order, and
            # another order changes its last bits (and so a seeded run's numbers)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_grad_norm)  # no host read
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # reads the inf/nan check on the host: a sync per step
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_sum
