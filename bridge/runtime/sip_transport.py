"""SIP over UDP and TCP (RFC 3261 §18): the asyncio half of the SIP stack.

Datagrams and framed TCP messages go up to one callback; bytes come down through ``send``.
A response or request to a TCP peer goes over the connection that peer opened; when there is
none (dial-out over TCP), one is opened and the message queued until it connects.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Coroutine
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


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.owner.capture_in(data, (str(addr[0]), int(addr[1])), self.owner.local, "UDP")
        self.owner.deliver(data, (str(addr[0]), int(addr[1])), "UDP")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction layer times out on its own.
        log.debug("UDP error: %s", exc)


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, owner: SipTransport) -> None:
        self.owner = owner
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Addr | None = None
        self.local: Addr = owner.local
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop: not a subclass
        peer = transport.get_extra_info("peername")
        self.peer = (str(peer[0]), int(peer[1]))
        sockname = transport.get_extra_info("sockname")
        self.local = (str(sockname[0]), int(sockname[1])) if sockname else self.owner.local
        if len(self.owner.connections) >= MAX_TCP_CONNECTIONS:
            log.warning("too many SIP TCP connections, refusing %s", self.peer)
            transport.close()
            return
        self.owner.connections[self.peer] = self
        for data in self.pending:
            self.owner.capture_out(data, self.local, self.peer, "TCP")
            self.transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
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
            self.owner.deliver(message, self.peer, "TCP")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.owner.connections.get(self.peer) is self:
            del self.owner.connections[self.peer]


class SipTransport:
    """UDP and TCP listeners on one address."""

    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp_server: asyncio.Server | None = None
        self.connections: dict[Addr, _TcpProtocol] = {}
        self.bad_streams = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolved: dict[str, str] = {}  # host name -> address (for the process lifetime)
        self.send_errors = 0
        self.local: Addr = ("0.0.0.0", 0)
        self.tap: Tap | None = None  # capture hook: every payload, both directions

    async def start(self, host: str, port: int, transports: tuple[str, ...]) -> Addr:
        """Bind; with port 0 the OS picks one port, used for both UDP and TCP."""
        loop = asyncio.get_running_loop()
        if "udp" in transports:
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            self.udp = udp
            sock = udp.get_extra_info("sockname")
            port = int(sock[1])
        if "tcp" in transports:
            self.tcp_server = await loop.create_server(
                lambda: _TcpProtocol(self), host, port, reuse_address=True
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
