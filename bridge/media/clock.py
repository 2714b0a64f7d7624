"""The media clock: one per process, on absolute deadlines (design notes §4).

``asyncio.sleep(0.02)`` drifts by more than a second a minute; this clock instead schedules tick
``k`` at ``start + k * period`` and derives what is due from the monotonic time passed in, so an
early or late wake-up never accumulates. It reads no clock itself: the runtime passes ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FRAME_SAMPLES = 160  # 20 ms at 8 kHz
PERIOD = 0.020


@dataclass(slots=True)
class TickPlan:
    """What to do at a wake-up: run ``run`` ticks starting at ``first``; ``skipped`` ticks were
    given up because the process fell too far behind (counted, never replayed as a burst)."""

    first: int
    run: int
    skipped: int
    lateness: float  # seconds between the first due deadline and now


class MediaClock:
    """Absolute-deadline tick counter. Tick ``k`` is due at ``start + k * period``."""

    __slots__ = ("_next", "max_burst", "period", "skipped_total", "start")

    def __init__(self, start: float, period: float = PERIOD, max_burst: int = 3) -> None:
        if period <= 0:
            raise ValueError("period must be positive")
        self.start = start
        self.period = period
        self.max_burst = max_burst
        self._next = 0
        self.skipped_total = 0

    @property
    def next_tick(self) -> int:
        return self._next

    def deadline(self, tick: int | None = None) -> float:
        """Absolute time at which ``tick`` (default: the next one) is due."""
        return self.start + (self._next if tick is None else tick) * self.period

    def plan(self, now: float) -> TickPlan:
        """Consume the ticks due at ``now``. A wake-up before the deadline runs nothing (uvloop
        can fire early); a late one runs the missed ticks, at most ``max_burst`` of them."""
        # Last tick whose deadline <= now (a nanosecond of slack absorbs float rounding).
        due_until = math.floor((now - self.start) / self.period + 1e-9)
        if due_until < self._next:
            return TickPlan(first=self._next, run=0, skipped=0, lateness=0.0)
        lateness = now - self.deadline()
        count = due_until - self._next + 1
        skipped = max(0, count - self.max_burst)
        first = self._next + skipped
        run = count - skipped
        self._next = due_until + 1
        self.skipped_total += skipped
        return TickPlan(first=first, run=run, skipped=skipped, lateness=lateness)


def lateness_summary(samples: Sequence[float] | npt.NDArray[np.float64]) -> tuple[float, float,
                                                                                   float]:
    """``(p50, p99, max)`` in milliseconds of tick lateness samples given in seconds (zeros if
    there are none)."""
    if len(samples) == 0:
        return 0.0, 0.0, 0.0
    values = np.asarray(samples, dtype=np.float64) * 1000.0
    p50, p99 = np.percentile(values, [50, 99])
    return float(p50), float(p99), float(values.max())
