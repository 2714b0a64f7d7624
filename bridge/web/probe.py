"""What /healthz and /metrics read from the running bridge.

``health`` (``bridge.service.live.Health``, from the composition root) gives the media clock's
tick age and the loop's lag. :class:`MetricsSource` gives the counters (read at scrape time)
and the tick lateness samples since the previous call (the histogram);
:class:`RuntimeMetrics` is that source over a running ``BridgeApp``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = ["CLOCK_STALLED_AFTER", "BridgeStats", "MetricsSource", "RuntimeMetrics"]

CLOCK_STALLED_AFTER = 1.0  # seconds without a media clock tick: /healthz answers 503


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeStats:
    """Counters of this bridge process since it started (``legs``: now)."""

    calls_answered: int = 0
    calls_active: int = 0
    legs: Mapping[str, int] = field(default_factory=dict)  # per process: main, worker-1..
    rtp_in: int = 0
    rtp_out: int = 0
    rtp_lost: int = 0
    admission_refusals: int = 0
    worker_restarts: int = 0


class MetricsSource(Protocol):
    def stats(self) -> BridgeStats: ...

    def drain_lateness(self) -> Sequence[float]:
        """Tick lateness samples (seconds) of the main media clock since the previous call."""
        ...

    async def worker_lateness(self) -> Mapping[str, tuple[float, float]]:
        """Per media worker: p99 and max tick lateness (seconds) since the previous call."""
        ...


class RuntimeMetrics:
    """:class:`MetricsSource` over a running ``bridge.runtime.app.BridgeApp``.

    RTP packets received and sent are the main process's plus the media workers': a worker
    reports its counts since the previous scrape (``worker_lateness`` marks), which add up
    here; lost packets are those of the main process's legs present now (RFC 3550
    cumulative loss per source).
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._ticks_seen = int(app.media.ticks)
        self._worker_in = 0  # RTP packets the media workers received and sent, summed over
        self._worker_out = 0  # the scrapes since this source was made

    def stats(self) -> BridgeStats:
        app = self.app
        media = app.media
        engine = media.engine
        legs = {"main": int(engine.leg_count)}
        pool = getattr(app, "pool", None)
        restarts = 0
        if pool is not None:
            for index, count in enumerate(pool.loads(), start=1):
                legs[f"worker-{index}"] = count
            restarts = int(getattr(pool, "restarted", 0))
        lost = 0
        for leg_id in list(getattr(engine, "_legs", {})):  # the engine lists no legs publicly
            received = engine.session(leg_id).receiver_stats
            if received is not None:
                lost += max(0, int(received.lost))
        counters = app.counters
        return BridgeStats(
            calls_answered=counters.calls_answered,
            calls_active=len(app.legs),
            legs=legs,
            rtp_in=int(media.io.received) + self._worker_in,
            rtp_out=int(engine.counters.packets_sent) + self._worker_out,
            rtp_lost=lost,
            admission_refusals=counters.calls_refused_overload,
            worker_restarts=restarts,
        )

    async def worker_lateness(self) -> Mapping[str, tuple[float, float]]:
        pool = getattr(self.app, "pool", None)
        if pool is None:
            return {}
        stats = await pool.stats(mark=True, timeout=2.0)
        self._worker_in += sum(s.packets_received for s in stats)
        self._worker_out += sum(s.packets_sent for s in stats)
        return {f"worker-{i}": (s.lateness_p99_ms / 1000.0, s.lateness_max_ms / 1000.0)
                for i, s in enumerate(stats, start=1)}

    def drain_lateness(self) -> Sequence[float]:
        media = self.app.media
        fresh = int(media.ticks) - self._ticks_seen
        self._ticks_seen = int(media.ticks)
        if fresh <= 0:
            return []
        return [float(x) for x in media.recent_lateness(fresh)]
