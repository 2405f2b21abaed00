"""Processes, devices and model wrapping for training: one implementation for the runner and the benchmarks.

A job of N processes is started by `torchrun --nproc_per_node N train.py ...` (RANK, WORLD_SIZE,
LOCAL_RANK in the environment); one process without torchrun is a job of one. Backend: NCCL on
CUDA, gloo on the CPU. Wrappers (`run.distributed`):
  ddp   DistributedDataParallel: a full replica per process, trainable gradients all-reduced in buckets.
  fsdp  FSDP2 (`torch.distributed.fsdp.fully_shard`): each LLM decoder layer is a unit, the rest of
        the model the root unit; trained weights, their gradients and optimizer state sharded over the
        processes, frozen weights replicated (`run.fsdp_frozen=replicate`) or sharded too (`shard`).
Both wrappers receive the collated CPU batch as a `HostBatch`, which they pass to the model untouched:
the model sees what it sees in one process and moves its inputs itself, without blocking copies.
"""
from __future__ import annotations

import os
from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Dict, Iterator, Optional

import torch
import torch.distributed as dist
from torch import nn

from mmrag.common.errors import ConfigError
from mmrag.runners.compilation import decoder_stack

STRATEGIES = ("ddp", "fsdp")
DEVICES = ("auto", "cpu", "cuda")
FSDP_FROZEN = ("replicate", "shard")  # run.fsdp_frozen: what FSDP2 does with the frozen weights


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job."""

    rank: int
    local_rank: int
    world: int
    device: torch.device
    backend: str
    owns_group: bool = False  # this code created the process group (and so destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto`: CUDA when present; `cuda` on a machine without one is refused."""
    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda': this machine has no CUDA device")
    use_cuda = name != "cpu" and torch.cuda.is_available()
    return torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")


def init_distributed(device: str = "auto", group_of_one: bool = False,
                     timeout: timedelta = timedelta(minutes=30)) -> Ranks:
    """Join the torchrun job (or the process group already set up); without torchrun a job of one,
    with a process group of one when `group_of_one` (code that calls collectives either way)."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dist.is_initialized():
        return Ranks(dist.get_rank(), local_rank, dist.get_world_size(), dev, backend)
    if "RANK" in os.environ and world > 1:
        dist.init_process_group(backend, timeout=timeout, device_id=dev if dev.type == "cuda" else None)
    elif group_of_one:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, timeout=timeout)
    else:
        return Ranks(0, 0, 1, dev, backend)
    return Ranks(rank, local_rank, world, dev, backend, owns_group=True)


def barrier(ranks: Ranks) -> None:
    if dist.is_initialized():
        dist.barrier(device_ids=[ranks.local_rank]) if ranks.backend == "nccl" else dist.barrier()


def shutdown(ranks: Ranks) -> None:
    """Destroy the process group if `init_distributed` created it (after a barrier: gloo aborts when a
    rank leaves while another still talks to it)."""
    if ranks.owns_group and dist.is_initialized():
        barrier(ranks)
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """Sum over processes, in place; queued on the device, no host read."""
    if ranks.world > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


# ---------------------------------------------------------------------------------------------- wrapping

class HostBatch(MutableMapping):
    """A collated batch handed through a DDP or FSDP2 wrapper to the model as it is.

    Both wrappers copy the tensors inside dict, list and tuple arguments to the device before the
    forward (DDP given `device_ids`, FSDP2 at its root unit), each copy blocking the host until the GPU
    has run everything queued; the model's host-side decisions on the CPU batch (is there padding,
    where are the targets) then read GPU tensors, each one more wait. FSDP2 also casts floating inputs
    to its `param_dtype`. The model moves what it needs itself, with non-blocking copies from pinned
    memory, as in one process; the wrappers do not look inside a mapping that is not a dict."""

    def __init__(self, batch: Dict[str, Any]) -> None:
        self.batch = batch

    def __getitem__(self, key: str) -> Any:
        return self.batch[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.batch[key] = value

    def __delitem__(self, key: str) -> None:
        del self.batch[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.batch)

    def __len__(self) -> int:
        return len(self.batch)


def is_wrapped(model: nn.Module) -> bool:
    """A DDP wrapper or an FSDP2 module: what `TrainStep` hands a `HostBatch`."""
    from torch.nn.parallel import DistributedDataParallel

    return isinstance(model, DistributedDataParallel) or hasattr(model, "set_requires_gradient_sync")


def buffers_change_in_training(model: nn.Module) -> bool:
    """Whether a training forward can change a buffer: a norm layer with running statistics that
    `model.train()` leaves in training mode (a frozen vision tower stays in eval mode). Other buffers
    (rotary frequencies, position ids) are constants that every process built alike."""
    modes = {m: m.training for m in model.modules()}
    model.train()
    changing = any(isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats and m.training
                   for m in model.modules())
    for module, mode in modes.items():
        module.training = mode
    return changing


def wrap_ddp(model: nn.Module, ranks: Ranks, static_graph: bool = False) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    ids = [ranks.local_rank] if ranks.device.type == "cuda" else None
    # frozen weights are not in DDP's buckets (requires_grad=False); buffers are broadcast from rank 0
    # before every forward (a collective and a host-side flatten/copy each step) only where training
    # changes them
    return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True, static_graph=static_graph,
                                   broadcast_buffers=buffers_change_in_training(model))


def wrap_fsdp(model: nn.Module, ranks: Ranks, param_dtype: Optional[torch.dtype] = None,
              reduce_dtype: Optional[torch.dtype] = None, frozen: str = "replicate") -> nn.Module:
    """FSDP2 in place: one unit per LLM decoder layer (its frozen weights + LoRA adapters), the rest as
    the root. With fp32 trained weights next to bf16 frozen ones, gather in `param_dtype`, reduce in
    `reduce_dtype`. Parameter names are unchanged (no wrapper module).

    `frozen` (run.fsdp_frozen):
      replicate  frozen weights stay whole, ordinary tensors on every process (FSDP2's `ignored_params`);
                 the trained ones are sharded, gathered once for forward and backward (kept between the
                 two) and their gradients reduce-scattered: a step moves the trained weights only (LoRA:
                 megabytes), not the whole model twice. Memory per process: the frozen model whole, as
                 under DDP; trained weights, gradients and optimizer state 1/N.
      shard      frozen weights sharded too (1/N per process), all-gathered unit by unit in the forward
                 and again in the backward: for a model whose frozen weights do not fit one device.
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    if frozen not in FSDP_FROZEN:
        raise ConfigError(f"run.fsdp_frozen={frozen!r} is not one of {', '.join(FSDP_FROZEN)}")
    mesh = init_device_mesh(ranks.device.type, (ranks.world,))
    kwargs: Dict = {"mesh": mesh}
    if param_dtype is not None or reduce_dtype is not None:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=reduce_dtype)
    layers = list(decoder_stack(model).layers)
    if frozen == "replicate":
        kwargs["ignored_params"] = {p for p in model.parameters() if not p.requires_grad}
        kwargs["reshard_after_forward"] = False
        layers = [layer for layer in layers if any(p.requires_grad for p in layer.parameters())]
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    return model


def wrap(model: nn.Module, strategy: str, ranks: Ranks, **fsdp_kwargs) -> nn.Module:
    """`strategy` (ddp | fsdp | single) applied when the job has several processes (always for fsdp)."""
    if strategy == "fsdp":
        return wrap_fsdp(model, ranks, **fsdp_kwargs)
    if strategy == "ddp" and ranks.world > 1:
        return wrap_ddp(model, ranks)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The model under a DDP wrapper (FSDP2 shards in place: the model itself)."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def full_trainable_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The trained weights, whole, on the CPU (under FSDP a collective: every process must call it)."""
    out = {}
    for name, p in unwrap(model).named_parameters():
        if p.requires_grad:
            full = p.full_tensor() if hasattr(p, "full_tensor") else p
            out[name] = full.detach().cpu().contiguous()
    return out
