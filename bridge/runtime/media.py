"""The asyncio half of the media engine: RTP/RTCP sockets per leg and the media clock.

One :class:`MediaRuntime` per process drives :class:`~bridge.media.engine.MediaEngine` on
absolute 20 ms deadlines (``loop.call_at``), sends what each tick returns, and hands the
engine's events to a callback. Tick lateness is kept in a bounded ring for the live stats and
the capacity benchmark.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import numpy as np

from bridge.media.clock import MediaClock
from bridge.media.engine import EngineConfig, LegMedia, MediaEngine, MediaEvent

log = logging.getLogger(__name__)

Addr = tuple[str, int]
LATENESS_RING = 3000  # one minute of ticks


class _RtpProtocol(asyncio.DatagramProtocol):
    __slots__ = ("_feed", "_time", "engine", "leg_id", "loop", "rtcp", "transport")

    def __init__(self, engine: MediaEngine, leg_id: str, rtcp: bool,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.engine = engine
        self.leg_id = leg_id
        self.rtcp = rtcp
        self.loop = loop
        self.transport: asyncio.DatagramTransport | None = None
        # Bound once: this runs per datagram.
        self._feed = engine.receive_rtcp if rtcp else engine.receive_rtp
        self._time = loop.time

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        # IPv4 sources are already (host, port); IPv6 ones carry flow info and scope id too.
        source = cast(Addr, addr) if len(addr) == 2 else (str(addr[0]), int(addr[1]))
        self._feed(self.leg_id, data, source, self._time())

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error on leg %s: %s", self.leg_id, exc)


@dataclass(slots=True)
class _LegSockets:
    port: int
    rtp: asyncio.DatagramTransport
    rtcp: asyncio.DatagramTransport
    protocols: tuple[_RtpProtocol, _RtpProtocol]


class PortPool:
    """Even RTP ports (RTCP on port + 1) from a range, handed out round-robin so a port is
    not reused at once for a new call (late packets of the old call would land there)."""

    def __init__(self, low: int, high: int) -> None:
        low += low % 2
        self._ports = list(range(low, high, 2))
        self._next = 0
        self._used: set[int] = set()

    def candidates(self) -> list[int]:
        n = len(self._ports)
        order = [self._ports[(self._next + i) % n] for i in range(n)]
        return [p for p in order if p not in self._used]

    def take(self, port: int) -> None:
        self._used.add(port)
        self._next = (self._ports.index(port) + 1) % len(self._ports)

    def release(self, port: int) -> None:
        self._used.discard(port)


class MediaRuntime:
    """Sockets, clock and engine of one media process."""

    def __init__(
        self,
        *,
        bind_host: str,
        port_low: int,
        port_high: int,
        on_event: Callable[[MediaEvent], None],
        config: EngineConfig | None = None,
    ) -> None:
        self.engine = MediaEngine(config)
        self.bind_host = bind_host
        self.ports = PortPool(port_low, port_high)
        self.on_event = on_event
        self._sockets: dict[str, _LegSockets] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: MediaClock | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.lateness = np.zeros(LATENESS_RING, dtype=np.float64)
        self.ticks = 0
        self.send_errors = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._clock = MediaClock(start=self._loop.time() + 0.02)
        self._arm()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for leg_id in list(self._sockets):
            self.remove_leg(leg_id)

    # -- legs --------------------------------------------------------------------------------

    async def open_leg(self, leg_id: str) -> int:
        """Bind an RTP/RTCP socket pair for a new leg; returns the RTP port for the SDP."""
        loop = asyncio.get_running_loop()
        for port in self.ports.candidates():
            try:
                rtp, rtp_proto = await loop.create_datagram_endpoint(
                    lambda: _RtpProtocol(self.engine, leg_id, False, loop),
                    local_addr=(self.bind_host, port),
                )
            except OSError:
                continue
            try:
                rtcp, rtcp_proto = await loop.create_datagram_endpoint(
                    lambda: _RtpProtocol(self.engine, leg_id, True, loop),
                    local_addr=(self.bind_host, port + 1),
                )
            except OSError:
                rtp.close()
                continue
            self.ports.take(port)
            self._sockets[leg_id] = _LegSockets(port, rtp, rtcp, (rtp_proto, rtcp_proto))
            return port
        raise OSError("no free RTP port pair in the configured range")

    def rename_leg(self, old: str, new: str) -> None:
        """Give opened sockets their final leg id (dial-out learns the call handle after the
        sockets exist)."""
        sockets = self._sockets.pop(old)
        for proto in sockets.protocols:
            proto.leg_id = new
        self._sockets[new] = sockets

    def attach_leg(self, leg_id: str, room: str, media: LegMedia) -> None:
        """Start media for a leg whose sockets are open (after the SDP answer)."""
        sockets = self._sockets[leg_id]
        assert self._loop is not None
        self.engine.add_leg(
            leg_id, room, media, ssrc=secrets.randbits(32), now=self._loop.time(),
            rtp_handle=sockets.rtp, rtcp_handle=sockets.rtcp, cname=f"bridge-{leg_id}",
        )

    def remove_leg(self, leg_id: str) -> None:
        """Stop media for a leg (RTCP BYE) and close its sockets."""
        try:
            if leg_id in self.engine and self._loop is not None:
                for handle, data, addr in self.engine.remove_leg(
                    leg_id, self._loop.time(), time.time()
                ):
                    self._send(handle, data, addr)
        finally:
            sockets = self._sockets.pop(leg_id, None)
            if sockets is not None:
                sockets.rtp.close()
                sockets.rtcp.close()
                self.ports.release(sockets.port)

    # -- the clock -----------------------------------------------------------------------------

    def _arm(self) -> None:
        assert self._loop is not None and self._clock is not None
        self._timer = self._loop.call_at(self._clock.deadline(), self._on_clock)

    def _on_clock(self) -> None:
        """One wake-up of the media clock. Whatever happens in a tick, the clock is re-armed:
        one leg's bad state must never silence every call of the process."""
        try:
            self._run_due_ticks()
        finally:
            self._arm()

    def _run_due_ticks(self) -> None:
        assert self._loop is not None and self._clock is not None
        now = self._loop.time()
        plan = self._clock.plan(now)
        if not plan.run:
            return
        # uvloop's loop.time() is cached per loop iteration in whole milliseconds: add the
        # time since then from the monotonic clock (the same clock) so lateness is exact.
        late = plan.lateness + (time.monotonic() - now)
        self.lateness[self.ticks % LATENESS_RING] = max(0.0, late)
        self.ticks += 1
        wallclock = time.time()
        engine = self.engine
        for _ in range(plan.run):
            # The handles are this runtime's transports (attach_leg): _send, inlined.
            out = cast(list[tuple[asyncio.DatagramTransport, bytes, Addr]],
                       engine.tick(now, wallclock))
            for transport, data, addr in out:
                if transport.is_closing():
                    self.send_errors += 1
                    continue
                try:
                    transport.sendto(data, addr)
                except (OSError, ValueError):  # unreachable or unusable address: count it
                    self.send_errors += 1
        for event in engine.events():
            try:
                self.on_event(event)
            except Exception:  # the application's handler failed: log it, keep the clock
                log.exception("media event handler failed for %r", event)

    def _send(self, handle: object, data: bytes, addr: Addr) -> None:
        transport = cast(asyncio.DatagramTransport, handle)
        if transport.is_closing():
            self.send_errors += 1
            return
        try:
            transport.sendto(data, addr)
        except (OSError, ValueError):
            self.send_errors += 1

    def lateness_samples(self) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
        """The most recent tick lateness values (seconds)."""
        n = min(self.ticks, LATENESS_RING)
        return self.lateness[:n].copy()

    def recent_lateness(self, count: int) -> np.ndarray[tuple[int], np.dtype[np.float64]]:
        """The lateness (seconds) of the last ``count`` ticks, oldest first (at most the ring's
        ``LATENESS_RING`` and the ticks run so far)."""
        n = max(0, min(count, self.ticks, LATENESS_RING))
        index = np.arange(self.ticks - n, self.ticks) % LATENESS_RING
        return self.lateness[index]

    @property
    def skipped_ticks(self) -> int:
        """Ticks given up because the process fell more than a burst behind."""
        return self._clock.skipped_total if self._clock is not None else 0
