"""What /healthz and /metrics read from the running bridge (the ``health`` of ``start_web``).

The composition root passes an object satisfying :class:`HealthProbe`; the web package does not
import the runtime. ``stats()`` is read at scrape time; ``drain_lateness()`` hands over the
media clock's tick lateness samples since the previous call (the histogram).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["CLOCK_STALLED_AFTER", "BridgeStats", "HealthProbe"]

CLOCK_STALLED_AFTER = 1.0  # seconds without a media clock tick: /healthz answers 503


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeStats:
    """Cumulative counters of this bridge process since it started."""

    calls_answered: int = 0
    calls_active: int = 0
    calls_rejected: Mapping[str, int] = field(default_factory=dict)  # by reason
    legs: Mapping[str, int] = field(default_factory=dict)  # legs per process: main, worker-1..
    rtp_in: int = 0
    rtp_out: int = 0
    rtp_lost: int = 0
    pin_failures: int = 0
    admission_refusals: int = 0
    worker_restarts: int = 0


class HealthProbe(Protocol):
    def last_tick(self) -> float | None:
        """``time.monotonic()`` of the main media clock's last tick (None: none yet)."""
        ...

    def drain_lateness(self) -> Sequence[float]:
        """Tick lateness samples (seconds) since the previous call."""
        ...

    def stats(self) -> BridgeStats: ...
