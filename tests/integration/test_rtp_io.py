"""RtpIo over real UDP sockets on 127.0.0.1: draining, connected sends, re-learning a peer."""

from __future__ import annotations

import select
import socket
from collections.abc import Iterator

import pytest

from bridge.codecs.g711 import Codec
from bridge.media.engine import LegMedia, MediaEngine
from bridge.rtp.packet import build_rtp, parse_rtp
from bridge.runtime.media import RtpIo
from tests.conftest import free_port

LOOPBACK = "127.0.0.1"
TICK = 0.02


def _udp(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOOPBACK, port))
    sock.settimeout(5)
    return sock


class _Phone:
    """A far end: sends PCMU with its own sequence numbers, reads what the bridge sends."""

    def __init__(self) -> None:
        self.sock = _udp()
        self.addr: tuple[str, int] = self.sock.getsockname()
        self.seq = 100

    def send(self, to: tuple[str, int], count: int = 1) -> None:
        for _ in range(count):
            self.sock.sendto(build_rtp(payload_type=0, sequence=self.seq, timestamp=self.seq * 160,
                                       ssrc=0x1234, payload=b"\x55" * 160), to)
            self.seq += 1

    def read(self) -> bytes:
        data: bytes = self.sock.recv(2048)
        return data

    def close(self) -> None:
        self.sock.close()


Rig = tuple[MediaEngine, RtpIo, tuple[str, int], "_Phone"]


@pytest.fixture
def rig() -> Iterator[Rig]:
    engine = MediaEngine()
    io = RtpIo(engine)
    # Bound to explicit ports, as MediaRuntime binds them: a disconnect keeps such a port
    # (an ephemeral one would be given up).
    port = free_port(even=True, span=2)
    rtp, rtcp = _udp(port), _udp(port + 1)
    local = rtp.getsockname()
    handles = io.adopt("a", rtp, rtcp)
    phone = _Phone()
    engine.add_leg("a", "r", LegMedia(codec=Codec.PCMU, payload_type=0, telephone_event_pt=None,
                                      remote=phone.addr),
                   ssrc=1, now=0.0, rtp_handle=handles[0], rtcp_handle=handles[1])
    io.attach("a")
    yield engine, io, local, phone
    io.close_all()
    phone.close()


def _tick(engine: MediaEngine, io: RtpIo, k: int) -> None:
    io.drain(k * TICK)
    io.send(engine.tick(k * TICK, 1e9 + k * TICK))


def _wait_received(io: RtpIo, engine: MediaEngine, k: int, total: int) -> int:
    """Drain (no sleeping: a blocking select on the epoll fd) until ``total`` datagrams."""
    while io.received < total:
        ready, _, _ = select.select([io.fileno()], [], [], 5)
        assert ready, "no datagram arrived"
        io.drain(k * TICK)
    return io.received


def test_socket_connects_to_the_peer_once_it_hears_it_and_sends_every_tick(rig: Rig) -> None:
    engine, io, local, phone = rig
    handle = io.handles("a")[0]
    _tick(engine, io, 0)
    first = parse_rtp(phone.read())  # sent with sendto: the peer has not been heard yet
    assert handle.connected is None
    phone.send(local, 3)
    _wait_received(io, engine, 1, 3)
    for k in range(1, 4):
        _tick(engine, io, k)
    assert handle.connected == phone.addr  # heard from where we send: connected
    assert handle.sock.getpeername() == phone.addr
    seqs = [parse_rtp(phone.read()).sequence for _ in range(3)]
    assert seqs == [first.sequence + 1, first.sequence + 2, first.sequence + 3]
    # RFC 3550 A.1 probation holds the first packet of a new source back; the rest count.
    assert engine.session("a").counters.packets_received == 2
    assert io.send_errors == 0


def test_new_address_disconnects_and_the_new_peer_is_heard(rig: Rig) -> None:
    engine, io, local, phone = rig
    handle = io.handles("a")[0]
    phone.send(local, 2)
    _wait_received(io, engine, 0, 2)
    _tick(engine, io, 0)
    _tick(engine, io, 1)
    assert handle.connected == phone.addr
    # Re-INVITE: the peer moved to another port. We send there; its packets must get in.
    moved = _Phone()
    try:
        engine.update_leg("a", LegMedia(codec=Codec.PCMU, payload_type=0,
                                        telephone_event_pt=None, remote=moved.addr))
        _tick(engine, io, 2)
        assert parse_rtp(moved.read()).ssrc == 1
        assert handle.connected is None
        heard = engine.session("a").counters.packets_received
        moved.send(local, 4)
        _wait_received(io, engine, 3, 6)
        _tick(engine, io, 3)
        assert handle.connected == moved.addr
        # The new peer's packets reached the session (its first one is held in probation).
        assert engine.session("a").counters.packets_received >= heard + 3
    finally:
        moved.close()


def test_a_flood_on_one_socket_is_read_in_bounded_rounds(rig: Rig) -> None:
    _engine, io, local, phone = rig
    phone.send(local, 50)
    # Everything sent on loopback is queued by the time sendto returns.
    assert io.drain(0.0) == RtpIo.MAX_ROUNDS
    assert io.drain(0.02) == RtpIo.MAX_ROUNDS


def test_a_closed_peer_counts_errors_and_nothing_raises(rig: Rig) -> None:
    engine, io, local, phone = rig
    phone.send(local, 2)
    _wait_received(io, engine, 0, 2)
    _tick(engine, io, 0)
    _tick(engine, io, 1)
    assert io.handles("a")[0].connected == phone.addr
    phone.close()  # its port now answers with ICMP port unreachable
    for k in range(2, 8):
        _tick(engine, io, k)
    assert io.send_errors + io.receive_errors > 0


def test_the_socket_connects_only_once_the_session_has_latched_the_peer(rig: Rig) -> None:
    engine, io, local, phone = rig
    handle = io.handles("a")[0]
    phone.send(local, 1)  # a new source's first packet: held in probation, nothing latched
    _wait_received(io, engine, 0, 1)
    _tick(engine, io, 0)
    session = engine.session("a")
    assert not session.latched
    # Until it latches, the session takes RTP from any address (symmetric RTP): the kernel must
    # not drop it first. Here the peer's media comes from another port (a NAT rebinding, an SBC
    # handing the stream over) before anything was latched.
    moved = _Phone()
    moved.seq = phone.seq  # the same stream, continued
    try:
        moved.send(local, 3)
        _wait_received(io, engine, 1, 4)
        _tick(engine, io, 1)
        assert session.latched and session.remote == moved.addr
        assert session.counters.packets_received == 3
        _tick(engine, io, 2)  # sent to the latched address: now connected to it
        assert handle.connected == moved.addr
        assert parse_rtp(moved.read()).ssrc == 1
    finally:
        moved.close()
