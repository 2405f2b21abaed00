"""Helpers shared by the benchmark scripts: device + dtype construction, step timing, memory, machine facts.

Benchmarks print one JSON line of figures at the end (`emit`); everything else they print is for people.
"""
from __future__ import annotations

import json
import os
import platform
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from mmrag.common.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class BenchError(ConfigError):
    """A benchmark was asked for something it cannot measure (bad flag combination, missing device)."""


def pick_device(name: Optional[str]) -> torch.device:
    """`cuda` when available unless told otherwise; refuses `cuda` on a machine without one."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"--device {name}: this machine has no CUDA device")
    return device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepTimer:
    """Per-step durations without a host sync per step: CUDA events on the GPU (read once at the end),
    the wall clock on the CPU (where every op is synchronous anyway)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._marks: List[Any] = []

    def mark(self) -> None:
        """Call before the first step and after every step."""
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self._marks.append(event)
        else:
            self._marks.append(time.perf_counter())

    def step_seconds(self) -> np.ndarray:
        sync(self.device)
        if self.device.type == "cuda":
            ms = [a.elapsed_time(b) for a, b in zip(self._marks, self._marks[1:])]
            return np.asarray(ms) / 1e3
        return np.diff(np.asarray(self._marks))


class TimedCall:
    """Wrap a callable (a logits processor, a prefix function) and add up its wall time in seconds.

    The device is synchronised before and after each call, so GPU work queued before the call is not
    charged to it and the GPU work it queues is; the syncs themselves slow the decode slightly.
    Attributes the wrapped object has (e.g. `reset`) are passed through.
    """

    def __init__(self, fn: Callable, device: torch.device) -> None:
        self.fn, self.device = fn, device
        self.seconds, self.calls = 0.0, 0

    def __call__(self, *args, **kwargs):
        sync(self.device)
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        sync(self.device)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out

    def clear(self) -> None:
        self.seconds, self.calls = 0.0, 0

    def __getattr__(self, name: str):
        return getattr(self.fn, name)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> Optional[float]:
    """Peak bytes allocated by tensors since the last reset, in GiB; None on the CPU (not tracked)."""
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2)


def free_memory(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def machine_info(device: torch.device) -> Dict[str, Any]:
    """What the figures were measured on: accelerator, library versions, CPU count, date."""
    import transformers

    info = {"device": str(device), "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
    return info


def zipf_passages(n_tokens: int, vocab: int, zipf_a: float, mean_len: int, seed: int) -> List[np.ndarray]:
    """Passages of Zipf-distributed token ids 3..vocab-1 (0-2 are LLaMA's specials), lengths uniform in
    [mean_len/2, 3*mean_len/2): a stand-in corpus whose n-gram statistics look like text's."""
    if n_tokens < mean_len or vocab <= 3:
        raise BenchError(f"corpus of {n_tokens} tokens over vocab {vocab}: need >= {mean_len} tokens and vocab > 3")
    rng = np.random.default_rng(seed)
    tokens = np.zeros(0, dtype=np.int64)
    while len(tokens) < n_tokens:  # the Zipf tail beyond the vocabulary is dropped, so draw until enough
        draws = rng.zipf(zipf_a, size=int(n_tokens * 1.3))
        tokens = np.concatenate([tokens, draws[draws <= vocab - 3]])
    tokens = (tokens[:n_tokens] + 2).astype(np.int32)
    lengths = rng.integers(max(mean_len // 2, 1), mean_len * 3 // 2, size=n_tokens // max(mean_len // 2, 1) + 1)
    cuts = np.cumsum(lengths)
    return [p for p in np.split(tokens, cuts[cuts < n_tokens]) if len(p)]


def percentile_ms(seconds: np.ndarray, q: float) -> float:
    return round(float(np.percentile(seconds, q)) * 1e3, 3)


def emit(result: Dict[str, Any]) -> None:
    """The one machine-readable line a benchmark prints, last."""
    print(json.dumps(result), flush=True)
