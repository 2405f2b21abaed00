"""Wall-clock seconds of named phases of a run (eval.py writes them to <output_dir>/timings.json)."""
from __future__ import annotations

import time
from typing import Any, Callable, Dict

import torch


class PhaseClock:
    """Seconds per named phase. When CUDA is in use, a phase waits for its queued GPU work before it is
    stopped, so work launched in one phase is not charged to the next."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = {}

    def time(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.synchronize()
        self.seconds[name] = self.seconds.get(name, 0.0) + round(time.perf_counter() - start, 3)
        return result
