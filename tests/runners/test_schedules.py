import math

import pytest
import torch

from mmrag.common.registry import LR_SCHEDULES
import mmrag  # noqa: F401


def _lrs(name, steps=10, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=kw["init_lr"])
    sched = LR_SCHEDULES.get(name)(opt, steps, **kw)
    out = []
    for _ in range(steps + 1):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_linear_warmup_then_cosine_to_min():
    lrs = _lrs("linear_warmup_cosine", init_lr=1.0, min_lr=0.1, warmup_steps=4, warmup_lr=0.0)
    assert lrs[:5] == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    assert lrs[7] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 6)))
    assert lrs[10] == pytest.approx(0.1)


def test_constant_with_warmup():
    lrs = _lrs("constant_with_warmup", init_lr=2.0, min_lr=0.0, warmup_steps=2, warmup_lr=1.0)
    assert lrs[:4] == pytest.approx([1.0, 1.5, 2.0, 2.0]) and lrs[-1] == pytest.approx(2.0)
