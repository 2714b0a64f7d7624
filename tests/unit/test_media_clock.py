"""The media clock on absolute deadlines: no drift, no bursts, early wake-ups ignored."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.media.clock import MediaClock, lateness_summary


def test_deadlines_are_absolute() -> None:
    clock = MediaClock(start=100.0)
    assert clock.deadline(0) == pytest.approx(100.0)
    assert clock.deadline(50) == pytest.approx(101.0)


def test_early_wakeup_runs_nothing() -> None:
    clock = MediaClock(start=10.0)
    assert clock.plan(9.999).run == 0
    plan = clock.plan(10.0)
    assert (plan.first, plan.run) == (0, 1)
    assert clock.plan(10.0195).run == 0  # uvloop may fire a little early
    assert clock.plan(10.0201).run == 1


def test_late_wakeup_catches_up_without_bursting() -> None:
    clock = MediaClock(start=0.0, max_burst=3)
    clock.plan(0.0)
    plan = clock.plan(0.0405)  # ticks 1 and 2 are due
    assert (plan.first, plan.run, plan.skipped) == (1, 2, 0)
    assert plan.lateness == pytest.approx(0.0205)
    plan = clock.plan(0.5)  # ticks 3..25 are due: run the last 3, skip 20
    assert (plan.first, plan.run, plan.skipped) == (23, 3, 20)
    assert clock.skipped_total == 20
    assert clock.next_tick == 26


@given(st.lists(st.floats(min_value=0.0, max_value=0.019), min_size=1, max_size=300))
def test_no_drift_over_many_ticks(jitters: list[float]) -> None:
    """However late each wake-up is (below one period), every tick runs exactly once, in order."""
    clock = MediaClock(start=0.0, max_burst=1000)
    ran: list[int] = []
    for k, jitter in enumerate(jitters):
        plan = clock.plan(k * 0.02 + jitter)
        ran.extend(range(plan.first, plan.first + plan.run))
    assert ran == list(range(len(jitters)))


def test_lateness_summary_in_milliseconds() -> None:
    assert lateness_summary([]) == (0.0, 0.0, 0.0)
    samples = [0.001] * 99 + [0.010]  # 99 ticks 1 ms late, one 10 ms late
    p50, p99, worst = lateness_summary(samples)
    assert p50 == pytest.approx(1.0)
    assert 1.0 <= p99 <= 10.0 and worst == pytest.approx(10.0)
