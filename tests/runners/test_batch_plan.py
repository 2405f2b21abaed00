"""BatchPlan: the weighted mixture draws datasets at their ratios, the micro-batches of a step cover its
global batch exactly once over ranks x accumulation, and every epoch of a dataset is a new permutation."""
from collections import Counter

import pytest

from mmrag.runners.batch_plan import BatchPlan, check_divisible


def test_mixture_frequencies_follow_the_ratios():
    steps = 20000
    plan = BatchPlan({"a": 10, "b": 7, "c": 5}, {"a": 5.0, "b": 3.0, "c": 2.0}, 4, steps, seed=3)
    counts = Counter(plan.step(s)[0] for s in range(steps))
    # binomial standard deviation at p=0.5 over 20000 draws is 0.0035: 0.015 is > 4 sigma
    for name, expected in {"a": 0.5, "b": 0.3, "c": 0.2}.items():
        assert counts[name] / steps == pytest.approx(expected, abs=0.015)


def test_a_zero_ratio_dataset_is_never_drawn():
    plan = BatchPlan({"a": 4, "b": 4}, {"a": 1.0, "b": 0.0}, 2, 200, seed=0)
    assert {plan.step(s)[0] for s in range(200)} == {"a"}


@pytest.mark.parametrize("world,accum", [(1, 1), (2, 1), (1, 3), (2, 3), (4, 3)])
def test_micro_batches_cover_the_global_batch_once(world, accum):
    plan = BatchPlan({"a": 50, "b": 30}, {"a": 1.0, "b": 1.0}, 24, 10, seed=1)
    per = 24 // (world * accum)
    for step in range(10):
        name, indices = plan.step(step)
        pieces = [plan.micro_batches(step, rank, world, accum) for rank in range(world)]
        seen = []
        for rank_pieces in pieces:
            assert len(rank_pieces) == accum
            for piece_name, piece in rank_pieces:
                assert piece_name == name and len(piece) == per
                seen.extend(piece)
        assert sorted(seen) == sorted(indices) and len(seen) == 24  # each sample of the step exactly once


def test_each_epoch_is_a_new_permutation():
    size, batch = 10, 4  # batches straddle the epoch boundary
    plan = BatchPlan({"a": size}, {"a": 1.0}, batch, 15, seed=7)
    drawn = [i for s in range(15) for i in plan.step(s)[1]]  # 60 samples = 6 epochs
    epochs = [drawn[e * size:(e + 1) * size] for e in range(6)]
    for order in epochs:
        assert sorted(order) == list(range(size))  # every sample once per epoch
    assert len({tuple(order) for order in epochs}) == 6  # reshuffled: no two epochs in the same order


def test_the_plan_is_a_function_of_the_seed():
    args = ({"a": 9, "b": 5}, {"a": 1.0, "b": 2.0}, 3, 30)
    same = [BatchPlan(*args, seed=5).step(s) for s in range(30)]
    assert same == [BatchPlan(*args, seed=5).step(s) for s in range(30)]
    assert same != [BatchPlan(*args, seed=6).step(s) for s in range(30)]


def test_indivisible_batch_and_empty_dataset_are_refused():
    with pytest.raises(ValueError, match="divisible by processes \\(2\\) x run.accum_grad_iters \\(3\\)"):
        check_divisible(8, 2, 3)
    with pytest.raises(ValueError, match="empty"):
        BatchPlan({"a": 0}, {"a": 1.0}, 2, 2, seed=0)
