"""The sweep timing rule of adaptive coalescing, without I/O (``delivery/coalescing.py``).

End-to-end behaviour (what clients receive under a one-publish-per-turn producer) is
tested in ``tests/test_coalescing.py``.
"""

from __future__ import annotations

import pytest

from tornadose.delivery.coalescing import DEFAULT_MAX_WAIT, SweepPacing


def test_the_first_sweep_starts_at_once() -> None:
    assert SweepPacing().delay(now=123.0) == 0.0


def test_after_an_idle_gap_as_long_as_the_last_sweep_the_next_starts_at_once() -> None:
    pacing = SweepPacing(max_wait=0.01)
    pacing.swept(started=10.0, ended=10.004)  # a 4 ms sweep
    assert pacing.delay(now=10.004 + 0.004) == 0.0
    assert pacing.delay(now=11.0) == 0.0


def test_a_message_right_after_a_sweep_waits_out_the_sweeps_cost() -> None:
    pacing = SweepPacing(max_wait=0.01)
    pacing.swept(started=10.0, ended=10.004)
    assert pacing.delay(now=10.004) == pytest.approx(0.004)
    assert pacing.delay(now=10.005) == pytest.approx(0.003)


def test_the_wait_is_bounded_by_max_wait_however_long_the_sweep() -> None:
    pacing = SweepPacing(max_wait=0.01)
    pacing.swept(started=10.0, ended=10.5)  # a 500 ms sweep (10,000 slow clients)
    assert pacing.delay(now=10.5) == pytest.approx(0.01)
    assert pacing.delay(now=10.52) == 0.0


def test_the_wait_follows_the_last_sweep_not_an_average() -> None:
    pacing = SweepPacing(max_wait=0.01)
    pacing.swept(started=0.0, ended=0.008)
    pacing.swept(started=1.0, ended=1.001)  # load fell: the next wait is short
    assert pacing.delay(now=1.001) == pytest.approx(0.001)


def test_max_wait_zero_turns_coalescing_off() -> None:
    pacing = SweepPacing(max_wait=0.0)
    pacing.swept(started=0.0, ended=0.05)
    assert pacing.delay(now=0.05) == 0.0


def test_the_default_bound_and_a_negative_one() -> None:
    assert SweepPacing().max_wait == DEFAULT_MAX_WAIT == 0.01
    with pytest.raises(ValueError, match="max_wait must not be negative, not -1"):
        SweepPacing(max_wait=-1)
