import numpy as np
import pytest

from mmrag.common.errors import DataFormatError
from mmrag.metrics.bootstrap import bootstrap_mean, format_difference, paired_bootstrap


def test_constant_scores_give_a_point_interval():
    out = bootstrap_mean([1.0] * 50)
    assert out == {"mean": 1.0, "low": 1.0, "high": 1.0, "n": 50}


def test_interval_matches_the_normal_approximation():
    # 400 Bernoulli(0.5) outcomes: the mean's standard error is 0.5 / 20 = 0.025, so the 95% interval
    # is about +-1.96 x 0.025 = +-0.049 around the sample mean
    x = np.array([1.0, 0.0] * 200)
    out = bootstrap_mean(x, n_boot=4000)
    assert out["mean"] == 0.5
    assert out["low"] == pytest.approx(0.451, abs=0.01) and out["high"] == pytest.approx(0.549, abs=0.01)


def test_paired_difference_cancels_shared_difficulty():
    # b is a minus 0.1 on every item: the paired difference has no spread at all, although both
    # methods' scores vary a lot across items
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, size=100)
    out = paired_bootstrap(a, a - 0.1)
    assert out["diff"] == pytest.approx(0.1) and out["low"] == pytest.approx(0.1) and out["high"] == pytest.approx(0.1)
    assert not out["within_noise"]


def test_identical_methods_are_within_noise():
    a = [1, 0, 1, 1, 0, 0, 1, 0]
    out = paired_bootstrap(a, a)
    assert out["diff"] == 0.0 and out["within_noise"]
    assert format_difference({"diff": 0.02, "low": -0.01, "high": 0.05, "within_noise": True}) == "+2.0 [-1.0, +5.0] within noise"


def test_unequal_lengths_are_refused():
    with pytest.raises(DataFormatError, match="equally long"):
        paired_bootstrap([1, 0], [1])
