"""95% bootstrap confidence intervals for a mean and for a paired difference of means.

Every headline difference between two methods evaluated on the same questions is reported as
`paired_bootstrap(a, b)`: per-question scores of both methods are resampled together (the same
question indices for both), so question difficulty cancels out. An interval that contains zero is
"within noise".
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np

from mmrag.common.errors import DataFormatError


def _intervals(stats: np.ndarray, level: float) -> tuple:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_mean(values: Sequence[float], n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> Dict[str, float]:
    """{"mean", "low", "high", "n"}: the mean of `values` and its percentile bootstrap interval."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise DataFormatError("bootstrap_mean: no values")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))
    low, high = _intervals(x[idx].mean(axis=1), level)
    return {"mean": float(x.mean()), "low": low, "high": high, "n": int(x.size)}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], n_boot: int = 10000, seed: int = 0,
                     level: float = 0.95) -> Dict[str, float]:
    """{"diff", "low", "high", "n", "within_noise"}: mean(a) - mean(b) over the same items, with a
    paired percentile bootstrap interval (items resampled jointly)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.size == 0:
        raise DataFormatError(f"paired_bootstrap: need two equally long, non-empty score lists (got {x.size} and {y.size})")
    d = x - y
    idx = np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))
    low, high = _intervals(d[idx].mean(axis=1), level)
    return {"diff": float(d.mean()), "low": low, "high": high, "n": int(d.size), "within_noise": bool(low <= 0 <= high)}


def format_difference(result: Dict[str, float], scale: float = 100.0) -> str:
    """'+3.5 [+1.0, +6.0]' (x `scale`), with 'within noise' when the interval contains zero."""
    text = f"{scale * result['diff']:+.1f} [{scale * result['low']:+.1f}, {scale * result['high']:+.1f}]"
    return text + (" within noise" if result["within_noise"] else "")
