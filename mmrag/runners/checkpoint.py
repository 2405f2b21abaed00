"""Atomic, verifiable training checkpoints (trainable weights, optimizer, scheduler, RNG, step).

A checkpoint is a folder `ckpt_step{N:08d}` written as `*.tmp` and renamed when complete, with a
manifest of sha256 sums; loading verifies every file and refuses a corrupt checkpoint by name.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from mmrag.common.errors import UserError
from mmrag.common.hashing import file_sha256

MANIFEST = "manifest.json"


class CorruptCheckpointError(UserError, RuntimeError):
    pass


def rng_state() -> Dict[str, Any]:
    np_state = np.random.get_state()
    tensors = {"torch_cpu": torch.get_rng_state(), "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64))}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = s
    meta = {"python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
            "numpy_pos": int(np_state[2]), "numpy_gauss": [int(np_state[3]), float(np_state[4])]}
    return {"tensors": tensors, "meta": meta}


def set_rng_state(tensors: Dict[str, torch.Tensor], meta: Dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    if torch.cuda.is_available():
        cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
    keys = tensors["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, meta["numpy_pos"], meta["numpy_gauss"][0], meta["numpy_gauss"][1]))
    version, state, gauss = meta["python"]
    random.setstate((version, tuple(state), gauss))


def save_checkpoint(folder: Path, trainable: Dict[str, torch.Tensor], optimizer_state: Dict[str, Any],
                    scheduler_state: Dict[str, Any], step: int, extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write everything into `folder.tmp`, fsync the manifest, then rename to `folder`."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable, str(tmp / "trainable.safetensors"))
    torch.save(optimizer_state, tmp / "optimizer.pt")
    rng = rng_state()
    save_file(rng["tensors"], str(tmp / "rng.safetensors"))
    state = {"step": step, "scheduler": scheduler_state, "rng": rng["meta"], **(extra or {})}
    (tmp / "state.json").write_text(json.dumps(state))
    manifest = {p.name: file_sha256(p) for p in sorted(tmp.iterdir())}
    with open(tmp / MANIFEST, "w") as f:
        json.dump(manifest, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


def verify(folder: Path) -> None:
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        raise CorruptCheckpointError(f"checkpoint {folder} has no {MANIFEST}: it was not written completely; refusing it")
    for name, digest in json.loads(manifest_file.read_text()).items():
        path = folder / name
        if not path.is_file() or file_sha256(path) != digest:
            raise CorruptCheckpointError(
                f"checkpoint {folder}: {name} is missing or does not match its sha256; refusing it "
                f"(older checkpoints are kept: resume from one with run.resume=<folder>)"
            )


def load_checkpoint(folder: Path) -> Dict[str, Any]:
    verify(folder)
    state = json.loads((folder / "state.json").read_text())
    return {
        "trainable": load_file(str(folder / "trainable.safetensors")),
        "optimizer": torch.load(folder / "optimizer.pt", weights_only=True),
        "rng_tensors": load_file(str(folder / "rng.safetensors")),
        **state,
    }


def list_checkpoints(output_dir: Path) -> List[Path]:
    return sorted(p for p in Path(output_dir).glob("ckpt_step*") if p.is_dir() and not p.name.endswith(".tmp"))


def prune(output_dir: Path, keep: int) -> None:
    for old in list_checkpoints(output_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old)


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Dict[str, Any]:
    """The optimizer state keyed by parameter name, whole (gathered under FSDP: every process must call
    it; only the main process receives it), so a checkpoint resumes on any number of processes."""
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=dist.is_initialized())
    return get_optimizer_state_dict(model, optimizer, options=options)


def set_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: Dict[str, Any]) -> None:
    """Load a `full_optimizer_state` (every process passes the whole state; FSDP keeps its shard)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
