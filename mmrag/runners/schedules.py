"""Learning-rate schedules, registered by name; each returns a multiplier of `init_lr` per step."""
from __future__ import annotations

import math
from typing import Optional

from torch.optim.lr_scheduler import LambdaLR

from mmrag.common.registry import LR_SCHEDULES


def _warmup(step: int, warmup_steps: int, init_lr: float, warmup_lr: float) -> Optional[float]:
    """The factor during linear warm-up (warmup_lr -> init_lr), or None once it is over."""
    if step >= warmup_steps:
        return None
    return (warmup_lr + (init_lr - warmup_lr) * step / max(1, warmup_steps)) / init_lr


@LR_SCHEDULES.register("linear_warmup_cosine")
def linear_warmup_cosine(optimizer, total_steps: int, warmup_steps: int, init_lr: float, min_lr: float,
                         warmup_lr: float) -> LambdaLR:
    """warmup_lr -> init_lr linearly over warmup_steps, then cosine down to min_lr at total_steps."""

    def factor(step: int) -> float:
        warm = _warmup(step, warmup_steps, init_lr, warmup_lr)
        if warm is not None:
            return warm
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return (min_lr + (init_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))) / init_lr

    return LambdaLR(optimizer, factor)


@LR_SCHEDULES.register("constant_with_warmup")
def constant_with_warmup(optimizer, total_steps: int, warmup_steps: int, init_lr: float, min_lr: float,
                         warmup_lr: float) -> LambdaLR:
    """warmup_lr -> init_lr linearly over warmup_steps, then init_lr."""

    def factor(step: int) -> float:
        warm = _warmup(step, warmup_steps, init_lr, warmup_lr)
        return 1.0 if warm is None else warm

    return LambdaLR(optimizer, factor)
