"""Operations endpoints: ``/healthz`` and ``/metrics`` (Prometheus text format).

/healthz answers 200 with the checks as JSON, or 503 when one fails: the media clock has not
ticked for ``CLOCK_STALLED_AFTER`` seconds, the event loop ran a 100 ms sleeper more than
``LOOP_LAG_LIMIT`` late lately, or the database refused a write (a heartbeat of this node).
/metrics serves prometheus-client's registry of this application: the bridge's counters
(read from the health probe at scrape time) and the tick lateness histogram.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bridge.web.probe import CLOCK_STALLED_AFTER, BridgeStats
from bridge.web.state import STATE, WebState

__all__ = ["LOOP_LAG_LIMIT", "add_routes", "health_checks"]

LOOP_LAG_LIMIT = 0.5  # seconds
DB_TIMEOUT = 2.0
LATENESS_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


async def health_checks(state: WebState) -> dict[str, dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = {}
    lag = max(state.loop_lag.current(), state.loop_lag.worst_recent)
    if state.health is not None:
        age = float(state.health.media_tick_age())
        checks["media_clock"] = {"ok": age < CLOCK_STALLED_AFTER,
                                 "seconds_since_tick": round(age, 6)}
        lag = max(lag, float(state.health.loop_lag()))
    checks["event_loop"] = {"ok": lag < LOOP_LAG_LIMIT, "lag_seconds": round(lag, 6)}
    try:
        await asyncio.wait_for(
            state.store.write_heartbeat(state.node_id or "web", time.time()), DB_TIMEOUT)
        checks["database"] = {"ok": True}
    except Exception as exc:  # any failure to write is the answer, not a crash of /healthz
        checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return checks


async def healthz(request: web.Request) -> web.Response:
    checks = await health_checks(request.app[STATE])
    ok = all(c["ok"] for c in checks.values())
    return web.json_response({"status": "ok" if ok else "failing", "checks": checks},
                             status=200 if ok else 503)


class _BridgeCollector(Collector):
    def __init__(self, state: WebState) -> None:
        self.state = state
        self.rejected: dict[str, int] = {}  # by reason, set by the handler before a scrape
        self.workers: dict[str, tuple[float, float]] = {}  # p99, max per worker (same)

    def collect(self) -> Iterator[Metric]:
        source = self.state.metrics
        stats: BridgeStats = source.stats() if source is not None else BridgeStats()
        yield CounterMetricFamily("bridge_calls_answered", "Calls answered",
                                  value=stats.calls_answered)
        yield GaugeMetricFamily("bridge_calls_active", "Calls in progress",
                                value=stats.calls_active)
        rejected = CounterMetricFamily("bridge_calls_rejected", "Calls rejected, by reason",
                                       labels=["reason"])
        by_reason = {**self.rejected, "overload": stats.admission_refusals}
        for reason, count in sorted(by_reason.items()):
            rejected.add_metric([reason], count)
        yield rejected
        legs = GaugeMetricFamily("bridge_legs", "Media legs per process", labels=["process"])
        for process, count in sorted(stats.legs.items()):
            legs.add_metric([process], count)
        yield legs
        yield CounterMetricFamily("bridge_rtp_packets_received", "RTP packets received",
                                  value=stats.rtp_in)
        yield CounterMetricFamily("bridge_rtp_packets_sent", "RTP packets sent",
                                  value=stats.rtp_out)
        yield CounterMetricFamily("bridge_rtp_packets_lost", "RTP packets lost (RFC 3550)",
                                  value=stats.rtp_lost)
        yield CounterMetricFamily("bridge_pin_failures", "Wrong PINs entered",
                                  value=self.rejected.get("wrong_pin", 0))
        yield CounterMetricFamily("bridge_admission_refusals",
                                  "Calls refused by admission control (503)",
                                  value=stats.admission_refusals)
        yield CounterMetricFamily("bridge_media_worker_restarts", "Media workers restarted",
                                  value=stats.worker_restarts)
        p99 = GaugeMetricFamily("bridge_worker_tick_lateness_p99_seconds",
                                "p99 tick lateness of each media worker's clock since the "
                                "previous scrape", labels=["process"])
        worst = GaugeMetricFamily("bridge_worker_tick_lateness_max_seconds",
                                  "Worst tick lateness of each media worker's clock since the "
                                  "previous scrape", labels=["process"])
        for process, (high, top) in sorted(self.workers.items()):
            p99.add_metric([process], high)
            worst.add_metric([process], top)
        yield p99
        yield worst
        yield GaugeMetricFamily("bridge_event_loop_lag_seconds",
                                "How late the event loop ran a 100 ms sleeper lately",
                                value=self.state.loop_lag.worst_recent)


class _Metrics:
    def __init__(self, state: WebState) -> None:
        self.state = state
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = _BridgeCollector(state)
        self.registry.register(self.collector)
        self.started = time.time()
        self.lateness = Histogram("bridge_tick_lateness_seconds",
                                  "How late the media clock ran its ticks",
                                  buckets=LATENESS_BUCKETS, registry=self.registry)

    async def count_rejections(self) -> None:
        """Calls this node turned away since the web server started, by reason (the store
        records every one, PIN failures included)."""
        state = self.state
        rows = await state.store.list_rejections(since=self.started, limit=1_000_000)
        counts: dict[str, int] = {}
        for row in rows:
            if not state.node_id or row.node_id == state.node_id:
                counts[row.reason.value] = counts.get(row.reason.value, 0) + 1
        self.collector.rejected = counts

    def drain(self) -> None:
        source = self.state.metrics
        if source is None:
            return
        for sample in source.drain_lateness():
            self.lateness.observe(max(0.0, float(sample)))

    def render(self) -> bytes:
        self.drain()
        return generate_latest(self.registry)


METRICS = web.AppKey("metrics", _Metrics)


async def metrics(request: web.Request) -> web.Response:
    collected = request.app[METRICS]
    await collected.count_rejections()
    source = request.app[STATE].metrics
    if source is not None:
        try:
            collected.collector.workers = dict(await source.worker_lateness())
        except TimeoutError:  # a worker that does not answer: its figures are left out
            collected.collector.workers = {}
    body = collected.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; "
                                                            "charset=utf-8"})


def add_routes(app: web.Application) -> None:
    state = app[STATE]
    app[METRICS] = collected = _Metrics(state)

    async def drain_often(_app: web.Application) -> Any:
        async def run() -> None:
            while True:  # keep the samples between scrapes (the probe's ring is bounded)
                await asyncio.sleep(5.0)
                collected.drain()

        task = asyncio.get_running_loop().create_task(run())
        yield
        task.cancel()

    app.cleanup_ctx.append(drain_often)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
