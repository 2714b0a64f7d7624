"""Capture the RTP a peer receives on the loopback interface (SIPp records no audio).

A packet socket (``AF_PACKET``, cooked ``SOCK_DGRAM`` so the data starts at the IPv4 header)
bound to ``lo`` sees every loopback datagram twice, once leaving and once arriving; only the
arriving copy (``PACKET_HOST``) is kept. A classic BPF program attached to the socket lets the
kernel pass only UDP datagrams to the watched ports (other tests share the loopback), and the
same test is repeated in Python for anything queued before the filter was attached. The kernel
stamps each packet on arrival (``SO_TIMESTAMPNS``), so a busy test loop does not skew the
times; they are converted to the monotonic clock asyncio uses (``loop.time()``).

Needs ``CAP_NET_RAW`` (the interop tests run as root). :func:`require_capture` fails the test
in CI (``BRIDGE_REQUIRE_PEERS=1``) and skips it elsewhere, like ``require_binary``.
"""

from __future__ import annotations

import contextlib
import ctypes
import socket
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

import pytest

from bridge.rtp.packet import RtpPacket, RtpParseError, is_rtcp, parse_rtp
from tests.conftest import peers_required

__all__ = [
    "CaptureUnavailableError",
    "CapturedRtp",
    "LoopbackCapture",
    "capture_available",
    "require_capture",
    "udp_port_filter",
]

ETH_P_IP = 0x0800
PACKET_HOST = 0
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
_TIMESPEC = struct.Struct("@qq")


class CaptureUnavailableError(RuntimeError):
    """No packet socket (not root / no CAP_NET_RAW, or not Linux)."""


@dataclass(frozen=True, slots=True)
class CapturedRtp:
    """One RTP packet seen arriving: monotonic arrival time, addresses, parsed packet."""

    arrival: float
    src: tuple[str, int]
    dst: tuple[str, int]
    packet: RtpPacket


def capture_available() -> str | None:
    """None when a packet socket can be opened, else the reason it cannot."""
    family = getattr(socket, "AF_PACKET", None)
    if family is None:
        return "AF_PACKET sockets exist only on Linux"
    try:
        probe = socket.socket(family, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
    except PermissionError:
        return "capturing loopback RTP needs root (CAP_NET_RAW) for an AF_PACKET socket"
    except OSError as exc:
        return f"cannot open an AF_PACKET socket: {exc}"
    probe.close()
    return None


def require_capture() -> None:
    """Fail (CI: ``CI`` or ``BRIDGE_REQUIRE_PEERS`` set) or skip when loopback capture is
    impossible."""
    reason = capture_available()
    if reason is None:
        return
    if peers_required():
        pytest.fail(reason)
    pytest.skip(reason)


def udp_port_filter(ports: Iterable[int]) -> list[tuple[int, int, int, int]]:
    """Classic BPF (code, jt, jf, k) accepting IPv4 UDP datagrams to any of ``ports``,
    first fragments only; offsets are from the IPv4 header (cooked packet socket)::

        ldb [9]; jeq #17 else drop      ; protocol UDP
        ldh [6]; jset #0x1fff -> drop   ; not a later fragment
        ldxb 4*([0]&0xf); ldh [x+2]     ; UDP destination port
        jeq #port_i -> accept ...; drop: ret #0; accept: ret #262144
    """
    wanted = sorted(set(ports))
    if not wanted or len(wanted) > 200:
        raise ValueError("watch 1 to 200 ports")
    n = len(wanted)
    # instruction indices: 0-5 header, 6..6+n-1 port tests, 6+n drop, 7+n accept
    drop, accept = 6 + n, 7 + n
    program = [
        (0x30, 0, 0, 9),
        (0x15, 0, drop - 2, 17),
        (0x28, 0, 0, 6),
        (0x45, drop - 4, 0, 0x1FFF),
        (0xB1, 0, 0, 0),
        (0x48, 0, 0, 2),
    ]
    for i, port in enumerate(wanted):
        here = 6 + i
        program.append((0x15, accept - here - 1, drop - here - 1 if i == n - 1 else 0, port))
    program += [(0x06, 0, 0, 0), (0x06, 0, 0, 0x40000)]
    return program


def _attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    code = b"".join(struct.pack("@HBBI", *ins) for ins in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("@HP", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it


class LoopbackCapture:
    """Records the RTP arriving at ``ports`` on 127.0.0.1 from :meth:`start` to :meth:`stop`.

    Use as a context manager around the call; read :meth:`packets` afterwards.
    """

    def __init__(self, ports: Iterable[int], *, interface: str = "lo") -> None:
        self.ports = frozenset(ports)
        self.interface = interface
        self._packets: list[CapturedRtp] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.passed_filter = 0  # datagrams the kernel queued for us (PACKET_STATISTICS)
        self.dropped_by_kernel = 0  # queued but lost (receive buffer full)
        self.not_rtp = 0

    def start(self) -> None:
        reason = capture_available()
        if reason is not None:
            raise CaptureUnavailableError(reason)
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_IP))
        try:
            _attach_filter(sock, udp_port_filter(self.ports))
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
            with contextlib.suppress(OSError):  # Linux >= 4.20; the Python check stays
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.bind((self.interface, ETH_P_IP))
            sock.settimeout(0.05)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        # kernel stamps are CLOCK_REALTIME; the tests think in time.monotonic() (loop.time())
        self._offset = time.monotonic() - time.time()
        self._thread = threading.Thread(target=self._run, name="loopback-capture", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            # struct tpacket_stats {tp_packets, tp_drops}: drops mean the capture lost audio
            stats = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
            passed, drops = struct.unpack("@II", stats)
            self.passed_filter += passed
            self.dropped_by_kernel += drops
            self._sock.close()
            self._sock = None

    def __enter__(self) -> LoopbackCapture:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def packets(self, port: int | None = None) -> list[CapturedRtp]:
        """Packets captured so far (to ``port`` only, if given), in arrival order."""
        with self._lock:
            found = list(self._packets)
        return found if port is None else [p for p in found if p.dst[1] == port]

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        space = socket.CMSG_SPACE(_TIMESPEC.size)
        while not self._stop.is_set():
            try:
                data, ancillary, _flags, address = sock.recvmsg(65535, space)
            except TimeoutError:
                continue
            except OSError:
                return  # closed under us
            if address[2] != PACKET_HOST:
                continue  # the outgoing copy of a loopback datagram
            stamp = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    stamp = sec + nsec * 1e-9
            self._record(data, stamp + self._offset)

    def _record(self, data: bytes, arrival: float) -> None:
        if len(data) < 28 or data[0] >> 4 != 4 or data[9] != socket.IPPROTO_UDP:
            return
        header = (data[0] & 0x0F) * 4
        sport, dport, length = struct.unpack_from("!HHH", data, header)
        if dport not in self.ports:
            return
        payload = data[header + 8 : header + length]
        if is_rtcp(payload):
            return
        try:
            packet = parse_rtp(payload)
        except RtpParseError:
            self.not_rtp += 1
            return
        src = (socket.inet_ntoa(data[12:16]), sport)
        dst = (socket.inet_ntoa(data[16:20]), dport)
        with self._lock:
            self._packets.append(CapturedRtp(arrival, src, dst, packet))
