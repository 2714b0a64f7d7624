"""What the web handlers share: the application state (``request.app[STATE]``), the
authenticated account of a request, and the client's address behind trusted proxies.

Its own module so that the route modules (``api``, ``live``, ``ops``) and the application
factory (``app``) import it without importing each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bridge.config import Config
from bridge.store.base import Account, Store

__all__ = ["ACCOUNT", "STATE", "LoopLag", "WebState", "account_of", "client_address"]


class LoopLag:
    """Measures how late the event loop runs a 100 ms sleeper (the loop's lag)."""

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.last = 0.0  # lateness of the latest wake-up, seconds
        self.worst_recent = 0.0
        self.beat = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        recent: list[float] = []
        while True:
            due = loop.time() + self.period
            await asyncio.sleep(self.period)
            self.last = max(0.0, loop.time() - due)
            self.beat = time.monotonic()
            recent = [*recent[-9:], self.last]
            self.worst_recent = max(recent)

    def current(self) -> float:
        """The lag now: also counts a wake-up that is overdue (a loop blocked right now)."""
        overdue = time.monotonic() - self.beat - self.period
        return max(self.last, overdue, 0.0)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass(slots=True, kw_only=True)
class WebState:
    """What the handlers share (``request.app[STATE]``)."""

    store: Store
    config: Config
    service: Any = None  # bridge.service.live.ConferenceService in a running bridge
    health: Any = None  # bridge.service.live.Health in a running bridge
    metrics: Any = None  # bridge.web.probe.MetricsSource in a running bridge
    loop_lag: LoopLag = field(default_factory=LoopLag)
    node_id: str = ""
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    touched: dict[int, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


STATE = web.AppKey("state", WebState)
ACCOUNT = web.RequestKey("account", Account)  # the authenticated Account


def client_address(request: web.Request) -> str:
    """The client's address: the peer, or the last untrusted hop of ``X-Forwarded-For`` when
    the peer is a trusted reverse proxy."""
    state = request.app[STATE]
    peer = request.remote or ""
    hops = [peer]
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()] + [peer]
    # Walk from the nearest hop back while the hop is a trusted proxy.
    for hop in reversed(hops[1:]):
        if not _trusted(hop, state.trusted_proxies):
            return hop
        hops.pop()
    return hops[0] if hops else peer


def _trusted(
    addr: str, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in net for net in nets)


def account_of(request: web.Request) -> Account:
    return request[ACCOUNT]
