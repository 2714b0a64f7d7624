"""SIP over UDP and TCP (RFC 3261 §18): the asyncio half of the SIP stack.

Datagrams and framed TCP messages go up to one callback; bytes come down through ``send``.
A response or request to a TCP peer goes over the connection that peer opened; when there is
none (dial-out over TCP), one is opened and the message queued until it connects.

Fair queue (issue 14): what arrives is queued per source address, not handed up at once. One
turn of the event loop hands up at most ``QUANTUM`` messages of each source (trunk sources
first) and ``TURN_BUDGET`` in all, then yields, so the media clock and the other sources keep
their share however fast one source sends. A source's queue holds ``QUEUE_LIMIT`` messages:
beyond it UDP datagrams are dropped (counted in ``queue_drops``) and a TCP connection stops
being read until its queue has drained (TCP must not lose messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from bridge.sip.message import SipMessage, SipParseError
from bridge.sip.parser import StreamFramer

log = logging.getLogger(__name__)

Addr = tuple[str, int]
# (message bytes from UDP, or a parsed TCP message; source address; "UDP" | "TCP")
Deliver = Callable[[bytes | SipMessage, Addr, str], None]
# (source, destination, "UDP" | "TCP", payload): the capture hook (bridge serve --capture)
Tap = Callable[[Addr, Addr, str, bytes], None]

MAX_TCP_CONNECTIONS = 1024
QUANTUM = 4  # messages of one source handed up per turn
TURN_BUDGET = 32  # messages handed up per turn in all
QUEUE_LIMIT = 64  # queued messages per source (trunk sources: 16 times as many)
UDP_READS_PER_WAKEUP = 256
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
MAX_DATAGRAM = 65535
SKF_NET_OFF = 0xFFF00000  # classic BPF: offsets from the network header (-0x100000)
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # Linux values; Python lacks them
SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)
BPF_MAX_BLOCKED = 250  # sources one filter holds (a BPF program has at most 4096 insns)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _UdpSocket:
    """The SIP UDP socket, read by a reader callback that takes up to ``UDP_READS_PER_WAKEUP``
    datagrams per wake-up (asyncio's datagram transport takes one per turn of the loop, so a
    flood would fill the kernel buffer and push out everyone else's datagrams)."""

    def __init__(self, owner: SipTransport, sock: socket.socket) -> None:
        self.owner = owner
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._read_ready)
        self.received = 0
        self._filter: ctypes.Array[ctypes.c_char] | None = None

    def get_extra_info(self, name: str) -> Any:
        return self.sock.getsockname() if name == "sockname" else None

    def _read_ready(self) -> None:
        owner = self.owner
        recvfrom, enqueue = self.sock.recvfrom, owner.enqueue
        for _ in range(UDP_READS_PER_WAKEUP):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP errors and friends: transactions time out
                log.debug("UDP error: %s", exc)
                return
            self.received += 1
            source = (str(addr[0]), int(addr[1]))
            if owner.tap is not None:
                owner.capture_in(data, source, owner.local, "UDP")
            enqueue(data, source, "UDP", None)

    def sendto(self, data: bytes, addr: Addr) -> None:
        self.sock.sendto(data, addr)

    def block(self, hosts: frozenset[str]) -> bool:
        """Drop datagrams from ``hosts`` in the kernel (a classic BPF socket filter on the
        IPv4 source address), so a flood costs this process nothing and cannot fill the
        socket's buffer; an empty set removes the filter. False when it cannot be done here
        (not Linux, an IPv6 socket): the intake's drops still apply."""
        if self.sock.family != socket.AF_INET or not sys.platform.startswith("linux"):
            return False
        addresses = sorted({int(ipaddress.IPv4Address(h)) for h in hosts if _is_ipv4(h)})
        if not addresses:
            with contextlib.suppress(OSError):
                self.sock.setsockopt(socket.SOL_SOCKET, SO_DETACH_FILTER, 0)
            return True
        addresses = addresses[:BPF_MAX_BLOCKED]
        n = len(addresses)
        # ld [net + 12]; jeq #a0, drop; ...; ret #-1 (accept); drop: ret #0
        program = [(0x20, 0, 0, SKF_NET_OFF + 12)]
        for i, address in enumerate(addresses):
            program.append((0x15, n - i, 0, address))  # jt: skip to the drop instruction
        program += [(0x06, 0, 0, 0xFFFFFFFF), (0x06, 0, 0, 0)]
        code = b"".join(struct.pack("HBBI", *ins) for ins in program)
        self._filter = ctypes.create_string_buffer(code)  # kept alive while attached
        fprog = struct.pack("HL", len(program), ctypes.addressof(self._filter))
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        except OSError as exc:
            log.warning("cannot filter SIP sources in the kernel: %s", exc)
            return False
        return True

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()


def _is_ipv4(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return True


def _udp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        # Room for bursts (the kernel caps SO_RCVBUF at net.core.rmem_max; root may exceed it).
        for option in (getattr(socket, "SO_RCVBUFFORCE", None), socket.SO_RCVBUF):
            if option is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, UDP_RECEIVE_BUFFER)
                break
            except OSError:
                continue
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """Inbound SIP TCP connections (issue 14): ``max_connections`` in all, of which
    ``reserved`` only for privileged sources (trunks, allowed networks); ``per_source`` from
    one address (trunks excepted); a connection that carries no dialog and has sent
    nothing (not even an RFC 5626 CRLF keepalive) for ``idle_timeout`` seconds is closed."""

    max_connections: int = MAX_TCP_CONNECTIONS
    reserved: int = 128
    per_source: int = 32
    idle_timeout: float = 150.0


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: SipTransport, *, inbound: bool = False) -> None:
        self.owner = owner
        self.inbound = inbound
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Addr | None = None
        self.local: Addr = owner.local
        self.pending: list[bytes] = []
        self.counted: tuple[str, bool] | None = None  # (host, privileged) while counted
        self.last_active = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop: not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        sockname = transport.get_extra_info("sockname")
        self.local = (str(sockname[0]), int(sockname[1])) if sockname else self.owner.local
        self.last_active = asyncio.get_running_loop().time()
        refusal = self.owner.admit_connection(self) if self.inbound else None
        if refusal is not None:
            self.owner.tcp_refused += 1
            log.debug("SIP TCP connection from %s refused: %s", self.peer, refusal)
            self.transport.abort()
            return
        self.owner.connections[self.peer] = self
        for data in self.pending:
            self.owner.capture_out(data, self.local, self.peer, "TCP")
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self.last_active = asyncio.get_running_loop().time()  # a CRLF keepalive counts
        self.owner.capture_in(data, self.peer, self.local, "TCP")
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            # A stream that cannot be framed cannot be resynchronised: drop the connection.
            self.owner.bad_streams += 1
            log.debug("closing SIP TCP connection from %s: %s", self.peer, exc)
            if self.transport is not None:
                self.transport.close()
            return
        if self.framer.pings and self.transport is not None:
            # RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong.
            self.transport.write(b"\r\n")
            self.framer.pings = 0
        for message in messages:
            self.owner.enqueue(message, self.peer, "TCP", self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.owner.connections.get(self.peer) is self:
            del self.owner.connections[self.peer]
        self.owner.release_connection(self)


class _SourceQueue:
    __slots__ = ("items", "limit", "paused", "priority")

    def __init__(self, priority: bool) -> None:
        self.items: deque[tuple[bytes | SipMessage, Addr, str]] = deque()
        self.priority = priority
        self.limit = QUEUE_LIMIT * (16 if priority else 1)
        self.paused: list[_TcpProtocol] = []  # TCP connections not read while this is full


class SipTransport:
    """UDP and TCP listeners on one address."""

    def __init__(self, deliver: Deliver,
                 is_priority: Callable[[str], bool] = lambda _host: False, *,
                 tcp_limits: TcpLimits | None = None,
                 is_privileged: Callable[[str], bool] = lambda _host: False,
                 dialog_peers: Callable[[], set[Addr]] = set) -> None:
        self.deliver = deliver
        self.is_priority = is_priority
        self.tcp_limits = tcp_limits or TcpLimits()
        self.is_privileged = is_privileged
        self.dialog_peers = dialog_peers  # TCP peers that carry a dialog (never idle-closed)
        self._tcp_per_source: dict[str, int] = {}
        self._tcp_inbound = 0
        self._tcp_unprivileged = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self.tcp_refused = 0  # inbound connections refused by the caps
        self.tcp_idle_closed = 0  # connections closed after the idle timeout
        self._queues: dict[str, _SourceQueue] = {}  # source host -> what waits
        self._ring: deque[str] = deque()  # sources with queued messages, in turn order
        self._priority_ring: deque[str] = deque()
        self._drain_scheduled = False
        self.queue_drops = 0  # UDP datagrams dropped because their source's queue was full
        self.blocked: frozenset[str] = frozenset()  # sources dropped in the kernel (floods)
        self.turns = 0
        self.udp: _UdpSocket | None = None
        self.tcp_server: asyncio.Server | None = None
        self.connections: dict[Addr, _TcpProtocol] = {}
        self.bad_streams = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolved: dict[str, str] = {}  # host name -> address (for the process lifetime)
        self.send_errors = 0
        self.local: Addr = ("0.0.0.0", 0)
        self.tap: Tap | None = None  # capture hook: every payload, both directions

    # -- TCP connection limits ----------------------------------------------------------------

    def admit_connection(self, conn: _TcpProtocol) -> str | None:
        """Count an inbound connection, or say why it is refused (see ``TcpLimits``)."""
        assert conn.peer is not None
        limits = self.tcp_limits
        host = conn.peer[0]
        privileged = self.is_privileged(host)
        if self._tcp_inbound >= limits.max_connections:
            return "the connection limit is reached"
        if not privileged and self._tcp_unprivileged >= limits.max_connections - limits.reserved:
            return "the connections left are reserved for trunks and allowed networks"
        if (self._tcp_per_source.get(host, 0) >= limits.per_source
                and not self.is_priority(host)):
            return f"{limits.per_source} connections from this source already"
        self._tcp_per_source[host] = self._tcp_per_source.get(host, 0) + 1
        self._tcp_inbound += 1
        self._tcp_unprivileged += not privileged
        conn.counted = (host, privileged)
        self._arm_sweeper()
        return None

    def release_connection(self, conn: _TcpProtocol) -> None:
        if conn.counted is None:
            return
        host, privileged = conn.counted
        conn.counted = None
        left = self._tcp_per_source.get(host, 0) - 1
        if left > 0:
            self._tcp_per_source[host] = left
        else:
            self._tcp_per_source.pop(host, None)
        self._tcp_inbound -= 1
        self._tcp_unprivileged -= not privileged

    def _arm_sweeper(self) -> None:
        if self._sweeper is None:
            interval = max(0.05, min(5.0, self.tcp_limits.idle_timeout / 4))
            self._sweeper = asyncio.get_running_loop().call_later(interval, self._sweep)

    def _sweep(self) -> None:
        """Close the connections without a dialog that were idle for ``idle_timeout``."""
        self._sweeper = None
        now = asyncio.get_running_loop().time()
        deadline = now - self.tcp_limits.idle_timeout
        idle = [c for c in self.connections.values() if c.last_active <= deadline]
        if idle:
            busy = self.dialog_peers()
            for conn in idle:
                if conn.peer in busy or conn.transport is None:
                    conn.last_active = now  # in use: look again one timeout later
                    continue
                self.tcp_idle_closed += 1
                conn.transport.close()
        if self.connections:
            self._arm_sweeper()

    # -- the fair queue -----------------------------------------------------------------------

    def enqueue(self, data: bytes | SipMessage, addr: Addr, transport: str,
                conn: _TcpProtocol | None) -> None:
        host = addr[0]
        queue = self._queues.get(host)
        if queue is None:
            queue = self._queues[host] = _SourceQueue(self.is_priority(host))
        items = queue.items
        if len(items) >= queue.limit:
            if conn is None:
                self.queue_drops += 1
                return
            # TCP: keep the message, stop reading this connection until the queue drains.
            if conn not in queue.paused and conn.transport is not None:
                conn.transport.pause_reading()
                queue.paused.append(conn)
        if not items:
            (self._priority_ring if queue.priority else self._ring).append(host)
        items.append((data, addr, transport))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    @property
    def queued(self) -> int:
        return sum(len(q.items) for q in self._queues.values())

    def _drain(self) -> None:
        """One turn: up to QUANTUM messages per source (trunks first), TURN_BUDGET in all."""
        self._drain_scheduled = False
        self.turns += 1
        budget = TURN_BUDGET
        for ring in (self._priority_ring, self._ring):
            rounds = len(ring)
            while ring and budget > 0 and rounds > 0:
                rounds -= 1
                host = ring.popleft()
                queue = self._queues[host]
                take = min(QUANTUM, budget)
                while take > 0 and queue.items:  # (a block may empty the queue meanwhile)
                    take -= 1
                    budget -= 1
                    data, addr, transport = queue.items.popleft()
                    try:
                        self.deliver(data, addr, transport)
                    except Exception:  # one message's handler failed: the others go on
                        log.exception("handling a SIP message from %s failed", addr)
                if queue.items:
                    ring.append(host)
                else:
                    del self._queues[host]
                if queue.paused and len(queue.items) < queue.limit // 2:
                    for conn in queue.paused:
                        if conn.transport is not None and not conn.transport.is_closing():
                            conn.transport.resume_reading()
                    queue.paused.clear()
        if (self._ring or self._priority_ring) and not self._drain_scheduled:
            self._drain_scheduled = True
            asyncio.get_running_loop().call_soon(self._drain)

    def block(self, hosts: frozenset[str]) -> None:
        """Drop UDP datagrams from ``hosts`` before they are read (see ``_UdpSocket.block``);
        their queued messages go too."""
        for host in hosts:
            queue = self._queues.get(host)
            if queue is not None:
                kept = deque(item for item in queue.items if item[2] != "UDP")
                self.queue_drops += len(queue.items) - len(kept)
                queue.items = kept
        self.blocked = hosts
        if self.udp is not None:
            self.udp.block(hosts)

    async def start(self, host: str, port: int, transports: tuple[str, ...]) -> Addr:
        """Bind; with port 0 the OS picks one port, used for both UDP and TCP."""
        loop = asyncio.get_running_loop()
        if "udp" in transports:
            bind_host = host
            if not _is_ip(host):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                bind_host = str(infos[0][4][0])
            self.udp = _UdpSocket(self, _udp_socket(bind_host, port))
            port = int(self.udp.get_extra_info("sockname")[1])
        if "tcp" in transports:
            self.tcp_server = await loop.create_server(
                lambda: _TcpProtocol(self, inbound=True), host, port, reuse_address=True,
                backlog=1024
            )
            sock = self.tcp_server.sockets[0].getsockname()
            port = int(sock[1])
        self.local = (host, port)
        return self.local

    def send(self, data: bytes, addr: Addr, transport: str) -> None:
        """Send to ``addr``; a host name (registrar, Record-Route, Contact) is resolved once
        without blocking the loop and cached, then the numeric address is used."""
        host = addr[0]
        if not _is_ip(host):
            numeric = self._resolved.get(host)
            if numeric is None:
                self._spawn(self._resolve_and_send(data, addr, transport))
                return
            addr = (numeric, addr[1])
        if transport.upper() == "TCP":
            conn = self.connections.get(addr)
            if conn is not None and conn.transport is not None:
                self.capture_out(data, conn.local, addr, "TCP")
                conn.transport.write(data)
                return
            self._connect_and_send(data, addr)
            return
        if self.udp is None:
            log.warning("no UDP transport to send to %s", addr)
            return
        self.capture_out(data, self.local, addr, "UDP")
        try:
            self.udp.sendto(data, addr)
        except (OSError, ValueError) as exc:  # unreachable or unusable: transactions time out
            self.send_errors += 1
            log.debug("SIP send to %s failed: %s", addr, exc)

    def capture_in(self, data: bytes, peer: Addr, local: Addr, transport: str) -> None:
        if self.tap is not None:
            self.tap(peer, local, transport, data)

    def capture_out(self, data: bytes, local: Addr, peer: Addr, transport: str) -> None:
        if self.tap is not None:
            self.tap(local, peer, transport, data)

    async def _resolve_and_send(self, data: bytes, addr: Addr, transport: str) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.local[0] else socket.AF_INET
        try:
            infos = await loop.getaddrinfo(addr[0], addr[1], family=family,
                                           type=socket.SOCK_DGRAM)
        except OSError as exc:
            self.send_errors += 1
            log.info("cannot resolve %s: %s", addr[0], exc)
            return
        if not infos:
            self.send_errors += 1
            return
        self._resolved[addr[0]] = str(infos[0][4][0])
        self.send(data, addr, transport)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _connect_and_send(self, data: bytes, addr: Addr) -> None:
        loop = asyncio.get_running_loop()
        proto = _TcpProtocol(self)
        proto.pending.append(data)

        async def connect() -> None:
            try:
                await loop.create_connection(lambda: proto, addr[0], addr[1])
            except OSError as exc:
                log.info("SIP TCP connect to %s failed: %s", addr, exc)

        self._spawn(connect())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._queues.clear()
        self._ring.clear()
        self._priority_ring.clear()
        for task in list(self._tasks):
            task.cancel()
        if self.udp is not None:
            self.udp.close()
        if self.tcp_server is not None:
            self.tcp_server.close()
            for conn in list(self.connections.values()):
                if conn.transport is not None:
                    conn.transport.close()
            await self.tcp_server.wait_closed()
