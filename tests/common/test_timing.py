"""PhaseClock: each phase's seconds cover its own work (a sleep of known length), repeated names add up,
and the phase's result is passed through."""
import time

from mmrag.common.timing import PhaseClock


def test_phases_hold_their_own_time_and_add_up():
    clock = PhaseClock()
    assert clock.time("a", lambda x: x + 1, 1) == 2
    clock.time("b", time.sleep, 0.05)
    clock.time("b", time.sleep, 0.05)
    assert set(clock.seconds) == {"a", "b"}
    assert clock.seconds["a"] < 0.05
    assert 0.1 <= clock.seconds["b"] < 0.5
