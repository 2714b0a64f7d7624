"""The I/O half of the media engine: RTP/RTCP sockets per leg and the media clock.

:class:`RtpIo` reads and writes a leg's sockets without asyncio (right before each tick it
drains every readable socket; it sends what the tick returns), so a media worker process can
use it in a plain loop. :class:`MediaRuntime` drives one
:class:`~bridge.media.engine.MediaEngine` and its ``RtpIo`` from the asyncio loop on absolute
20 ms deadlines (``loop.call_at``) and hands the engine's events to a callback. Tick lateness
is kept in a bounded ring for the live stats and the capacity benchmark.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import secrets
import select
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from bridge.media.clock import MediaClock
from bridge.media.engine import EngineConfig, LegMedia, LegTransfer, MediaEngine, MediaEvent
from bridge.rtp.packet import RtpPacket

log = logging.getLogger(__name__)

Addr = tuple[str, int]
LATENESS_RING = 3000  # one minute of ticks


class _Port:
    """One RTP or RTCP socket of a leg: the handle the engine gives back with each datagram.

    An RTP socket is ``connect``-ed to the peer once the peer's packets come from where we send
    and the session has latched that address (symmetric RTP): a connected UDP socket skips the
    per-packet route lookup and address conversion (``send`` costs about half of ``sendto``
    here) and the kernel drops packets from anyone else. When the sending address changes
    (re-INVITE, a new latch), the socket is disconnected and learns again.
    """

    __slots__ = ("connected", "fd", "feed", "leg_id", "local", "receive", "rtcp", "sock",
                 "source", "v6")

    def __init__(self, sock: socket.socket, leg_id: str,
                 feed: Callable[[str, bytes, Addr, float], object], *, rtcp: bool) -> None:
        self.sock = sock
        self.rtcp = rtcp
        self.fd = sock.fileno()
        self.leg_id = leg_id
        self.feed = feed
        # An attached RTP port calls its session directly (MediaEngine.rtp_receiver).
        self.receive: Callable[[bytes, Addr, float], RtpPacket | None] | None = None
        self.v6 = sock.family == socket.AF_INET6
        self.connected: Addr | None = None
        self.source: Addr | None = None  # where the last datagram came from
        name = sock.getsockname()
        self.local: Addr = (str(name[0]), int(name[1]))


def _disconnect(sock: socket.socket) -> bool:
    """Dissolve a UDP socket's association (connect to AF_UNSPEC, POSIX/Linux); False where
    that is not possible (the socket then stays connected to its last peer)."""
    if _LIBC is None:
        return False
    unspec = (ctypes.c_ubyte * 16)()  # struct sockaddr with sa_family = AF_UNSPEC (0)
    return int(_LIBC.connect(sock.fileno(), unspec, ctypes.sizeof(unspec))) == 0


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - no C library to call
    _LIBC = None


class RtpIo:
    """The RTP/RTCP sockets of one engine's legs, read and written without asyncio.

    Datagrams are not delivered one callback at a time: :meth:`drain`, called right before each
    tick, reads every socket that ``epoll`` reports readable (one ``epoll_wait`` for all legs,
    one ``recv`` per datagram), so per packet there is no event-loop round trip. A datagram is
    played at the tick after it arrives either way; its arrival time is taken as the drain's
    ``now`` (RFC 3550 A.8 jitter is then measured to the 20 ms tick). :meth:`send` writes what
    the engine returns. Usable from an asyncio loop (``MediaRuntime``) or a plain loop (a media
    worker process).
    """

    MAX_ROUNDS = 4  # datagrams per socket per drain at most: a flood cannot starve the clock

    def __init__(self, engine: MediaEngine) -> None:
        self.engine = engine
        self._epoll = select.epoll()
        self._ports: dict[int, _Port] = {}  # by file descriptor
        self._legs: dict[str, tuple[_Port, _Port]] = {}
        self.send_errors = 0
        self.receive_errors = 0
        self.received = 0
        # capture hook (bridge serve --capture with capture_rtp): (src, dst, "UDP", datagram)
        self.tap: Callable[[Addr, Addr, str, bytes], None] | None = None

    def __len__(self) -> int:
        return len(self._legs)

    def adopt(self, leg_id: str, rtp: socket.socket, rtcp: socket.socket) -> tuple[_Port, _Port]:
        """Take over a leg's two sockets, bound to explicit ports (a disconnect keeps such a
        port; an ephemeral one would be lost); returns the handles for ``engine.add_leg``."""
        if leg_id in self._legs:
            raise ValueError(f"leg {leg_id!r} has sockets already")
        ports = (_Port(rtp, leg_id, self.engine.receive_rtp, rtcp=False),
                 _Port(rtcp, leg_id, self.engine.receive_rtcp, rtcp=True))
        for port in ports:
            port.sock.setblocking(False)
            self._epoll.register(port.fd, select.EPOLLIN)
            self._ports[port.fd] = port
        self._legs[leg_id] = ports
        return ports

    def attach(self, leg_id: str) -> None:
        """The leg is in the engine now: its RTP goes straight to its session."""
        self._legs[leg_id][0].receive = self.engine.rtp_receiver(leg_id)

    def rename(self, old: str, new: str) -> None:
        ports = self._legs.pop(old)
        for port in ports:
            port.leg_id = new
        self._legs[new] = ports

    def release(self, leg_id: str) -> tuple[socket.socket, socket.socket] | None:
        """Stop serving a leg and hand back its sockets, open (to pass to another process)."""
        ports = self._legs.pop(leg_id, None)
        if ports is None:
            return None
        for port in ports:
            port.receive = None
            self._epoll.unregister(port.fd)
            del self._ports[port.fd]
            if port.connected is not None:
                _disconnect(port.sock)
        return ports[0].sock, ports[1].sock

    def close(self, leg_id: str) -> None:
        """Stop serving a leg and close its sockets."""
        socks = self.release(leg_id)
        if socks is not None:
            for sock in socks:
                sock.close()

    def handles(self, leg_id: str) -> tuple[_Port, _Port]:
        """The engine handles of a leg's sockets (as :meth:`adopt` returned them)."""
        return self._legs[leg_id]

    def close_all(self) -> None:
        for leg_id in list(self._legs):
            self.close(leg_id)
        self._epoll.close()

    def fileno(self) -> int:
        """The epoll descriptor: readable when some leg has a datagram waiting."""
        return self._epoll.fileno()

    def drain(self, now: float) -> int:
        """Feed every waiting datagram to the engine; returns how many."""
        ports = self._ports
        if not ports:
            return 0
        poll = self._epoll.poll
        event = self.engine.receive_event
        read = os.read
        tap = self.tap
        count = 0
        for _ in range(self.MAX_ROUNDS):
            ready = poll(0, len(ports))
            if not ready:
                break
            for fd, _events in ready:
                port = ports.get(fd)
                if port is None:
                    continue
                try:
                    if port.connected is not None:
                        data = read(port.fd, 2048)  # a connected datagram socket: one recv
                        addr = port.connected
                    else:
                        data, source = port.sock.recvfrom(2048)
                        addr = source if not port.v6 else (str(source[0]), int(source[1]))
                        port.source = addr
                except BlockingIOError:
                    continue
                except OSError:  # ICMP port unreachable on a connected socket, and the like
                    self.receive_errors += 1
                    continue
                count += 1
                if tap is not None:
                    tap(addr, port.local, "UDP", data)
                receive = port.receive
                if receive is None:  # RTCP, or a leg not (yet) in the engine
                    port.feed(port.leg_id, data, addr, now)
                    continue
                packet = receive(data, addr, now)
                if packet is not None:  # RFC 4733
                    event(port.leg_id, packet, now)
        self.received += count
        return count

    def run_ticks(self, count: int, now: float, wallclock: float) -> None:
        """One wake-up of a media clock that has ``count`` ticks due: read what arrived, then
        tick the engine and send, ``count`` times."""
        self.drain(now)
        engine = self.engine
        for _ in range(count):
            self.send(engine.tick(now, wallclock))

    def send(self, out: Iterable[tuple[Any, bytes, Addr]]) -> None:
        """Send what the engine returned (``tick``, ``remove_leg``); failures are counted.
        The handles are this object's ports (:meth:`adopt`)."""
        write = os.write
        tap = self.tap
        port: _Port
        for port, data, addr in out:
            if tap is not None:
                tap(port.local, addr, "UDP", data)
            try:
                if addr == port.connected:
                    write(port.fd, data)  # a connected datagram socket: one send
                    continue
                if port.connected is not None:
                    # Sending elsewhere now (re-INVITE or a new latch): listen to anyone again.
                    if _disconnect(port.sock):
                        port.connected = None
                    else:  # pragma: no cover - no AF_UNSPEC connect: follow the new address
                        port.sock.connect(addr)
                        port.connected = addr
                        port.sock.send(data)
                        continue
                if addr == port.source and not port.rtcp and self._latched(port.leg_id, addr):
                    port.sock.connect(addr)
                    port.connected = addr
                    port.sock.send(data)
                else:
                    port.sock.sendto(data, addr)
            except (OSError, ValueError):  # unreachable, closed or unusable address: count it
                self.send_errors += 1

    def _latched(self, leg_id: str, addr: Addr) -> bool:
        """Whether the leg's session has latched ``addr`` and so drops every other source
        itself; before that it takes a new source (symmetric RTP), which a connected socket
        would never see."""
        try:
            session = self.engine.session(leg_id)
        except KeyError:
            return False
        return session.latched and session.remote == addr


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
        self.io = RtpIo(self.engine)
        self._ports_of: dict[str, int] = {}  # leg -> its RTP port (RTCP: + 1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clock: MediaClock | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.lateness = np.zeros(LATENESS_RING, dtype=np.float64)
        self.ticks = 0
        self.last_tick_at: float | None = None  # loop time of the clock's last tick

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._clock = MediaClock(start=self._loop.time() + 0.02)
        self._arm()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for leg_id in list(self._ports_of):
            self.remove_leg(leg_id)
        self.io.close_all()

    # -- legs --------------------------------------------------------------------------------

    async def open_leg(self, leg_id: str) -> int:
        """Bind an RTP/RTCP socket pair for a new leg; returns the RTP port for the SDP."""
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        for port in self.ports.candidates():
            rtp = socket.socket(family, socket.SOCK_DGRAM)
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtp.bind((self.bind_host, port))
                rtcp.bind((self.bind_host, port + 1))
            except OSError:
                rtp.close()
                rtcp.close()
                continue
            self.ports.take(port)
            self.io.adopt(leg_id, rtp, rtcp)
            self._ports_of[leg_id] = port
            return port
        raise OSError("no free RTP port pair in the configured range")

    def rename_leg(self, old: str, new: str) -> None:
        """Give opened sockets their final leg id (dial-out learns the call handle after the
        sockets exist)."""
        self.io.rename(old, new)
        self._ports_of[new] = self._ports_of.pop(old)

    def attach_leg(self, leg_id: str, room: str, media: LegMedia) -> None:
        """Start media for a leg whose sockets are open (after the SDP answer)."""
        rtp, rtcp = self.io.handles(leg_id)
        assert self._loop is not None
        self.engine.add_leg(
            leg_id, room, media, ssrc=secrets.randbits(32), now=self._loop.time(),
            rtp_handle=rtp, rtcp_handle=rtcp, cname=f"bridge-{leg_id}",
        )
        self.io.attach(leg_id)

    def detach_leg(self, leg_id: str) -> tuple[LegTransfer, socket.socket, socket.socket]:
        """Hand a leg's media to another process: its state and its two open sockets. The
        port stays taken here until :meth:`release_port` (the leg still owns it)."""
        state = self.engine.export_leg(leg_id)
        socks = self.io.release(leg_id)
        assert socks is not None
        return state, socks[0], socks[1]

    def adopt_leg(self, state: LegTransfer, rtp: socket.socket, rtcp: socket.socket) -> None:
        """Take back a leg's media from another process (see :meth:`detach_leg`)."""
        assert self._loop is not None
        handles = self.io.adopt(state.leg_id, rtp, rtcp)
        self.engine.import_leg(state, now=self._loop.time(), rtp_handle=handles[0],
                               rtcp_handle=handles[1])
        self.io.attach(state.leg_id)

    def release_port(self, leg_id: str) -> None:
        """The leg whose media lives elsewhere has ended: its port may be reused."""
        port = self._ports_of.pop(leg_id, None)
        if port is not None:
            self.ports.release(port)

    def remove_leg(self, leg_id: str) -> None:
        """Stop media for a leg (RTCP BYE) and close its sockets."""
        try:
            if leg_id in self.engine and self._loop is not None:
                self.io.send(self.engine.remove_leg(leg_id, self._loop.time(), time.time()))
        finally:
            self.io.close(leg_id)
            self.release_port(leg_id)

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
        self.last_tick_at = now
        # uvloop's loop.time() is cached per loop iteration in whole milliseconds: add the
        # time since then from the monotonic clock (the same clock) so lateness is exact.
        late = plan.lateness + (time.monotonic() - now)
        self.lateness[self.ticks % LATENESS_RING] = max(0.0, late)
        self.ticks += 1
        self.io.run_ticks(plan.run, now, time.time())
        for event in self.engine.events():
            try:
                self.on_event(event)
            except Exception:  # the application's handler failed: log it, keep the clock
                log.exception("media event handler failed for %r", event)

    @property
    def send_errors(self) -> int:
        return self.io.send_errors

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
