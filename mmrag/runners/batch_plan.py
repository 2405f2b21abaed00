"""Which samples every optimizer step reads: a pure function of (seed, step), so a resumed run
reads exactly what the uninterrupted run would have, on any number of processes.

Each step picks ONE dataset with probability proportional to its `sample_ratio` (the weighted
mixture of MLLM-DataEngine / MiniGPT); within a dataset, samples come from a per-epoch shuffle.
The global batch of a step is split into `accum` micro-batches x `world` processes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np


@dataclass
class BatchPlan:
    sizes: Dict[str, int]          # dataset name -> number of samples
    ratios: Dict[str, float]       # dataset name -> sample ratio
    global_batch: int
    total_steps: int
    seed: int

    def __post_init__(self) -> None:
        empty = [n for n, s in self.sizes.items() if s == 0]
        if empty:
            raise ValueError(f"training dataset(s) {empty} are empty")
        names = sorted(self.sizes)
        p = np.array([self.ratios[n] for n in names], dtype=np.float64)
        rng = np.random.default_rng(self.seed)
        picks = rng.choice(len(names), size=self.total_steps, p=p / p.sum())
        self._names = names
        self._choice = [names[i] for i in picks]
        self._offset: List[int] = []  # how many samples the picked dataset served before this step
        served = {n: 0 for n in names}
        for name in self._choice:
            self._offset.append(served[name])
            served[name] += self.global_batch

    def _order(self, name: str, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self._names.index(name), epoch])
        return rng.permutation(self.sizes[name])

    def step(self, step: int) -> Tuple[str, List[int]]:
        """(dataset name, global-batch sample indices) of one optimizer step."""
        name, start = self._choice[step], self._offset[step]
        n = self.sizes[name]
        out: List[int] = []
        while len(out) < self.global_batch:
            epoch, pos = divmod(start + len(out), n)
            take = min(self.global_batch - len(out), n - pos)
            out.extend(self._order(name, epoch)[pos:pos + take].tolist())
        return name, out

    def micro_batches(self, step: int, rank: int, world: int, accum: int) -> List[Tuple[str, List[int]]]:
        name, indices = self.step(step)
        per = self.global_batch // (world * accum)
        chunks = [indices[i * per * world:(i + 1) * per * world] for i in range(accum)]
        return [(name, chunk[rank * per:(rank + 1) * per]) for chunk in chunks]


def check_divisible(global_batch: int, world: int, accum: int) -> None:
    if global_batch % (world * accum):
        raise ValueError(
            f"run.batch_size={global_batch} (global) must be divisible by processes ({world}) x "
            f"run.accum_grad_iters ({accum})"
        )
