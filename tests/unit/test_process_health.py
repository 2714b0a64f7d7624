"""ProcessHealth: a media clock that never ticks ages like one that stopped (/healthz 503)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import cast

from bridge.runtime.app import BridgeApp
from bridge.runtime.serve import ProcessHealth


def _app(last_tick_at: float | None) -> BridgeApp:
    return cast(BridgeApp, SimpleNamespace(media=SimpleNamespace(last_tick_at=last_tick_at)))


async def test_a_clock_that_never_ticked_ages_from_the_start() -> None:
    health = ProcessHealth(_app(None))
    assert health.media_tick_age() == 0.0  # not started: nothing to judge yet
    health.start()
    try:
        await asyncio.sleep(0.05)
        assert health.media_tick_age() >= 0.04
    finally:
        health.stop()


async def test_the_age_is_measured_from_the_last_tick() -> None:
    loop = asyncio.get_running_loop()
    health = ProcessHealth(_app(loop.time() - 2.0))
    health.start()
    try:
        assert 2.0 <= health.media_tick_age() < 3.0
    finally:
        health.stop()
