"""The baseline: a bare G.711 N-1 relay in minimal, straightforward Python + numpy.

No SIP, no jitter buffer, no VAD, no RTCP. One UDP socket per participant; each socket keeps
the last 20 ms PCMU packet it received (RFC 3550 §5.1 header + 160 payload octets, PT 0,
RFC 3551 §4.5.14) and latches the sender's address (symmetric RTP). On a 20 ms
absolute-deadline tick the relay decodes every participant's last payload with a 256-entry
table, sums each room in int32, gives every participant ``room total - own`` clipped to int16,
encodes it with the 65,536-entry table and sends one RTP packet per participant. Rooms are
consecutive blocks of ``rooms_of`` participants in the order they were added.

It is the yardstick the bridge's CPU per participant-tick is divided by, so it is written the
way a competent Python developer would (vectorised over all rooms, preallocated buffers, one
``sendto`` per participant), not artificially slow.

Run it as its own process and drive it over JSON lines (see :mod:`bridge.benchmark.control`)::

    python -m bridge.benchmark.relay --config '{"rooms_of": 3, "max_participants": 1200}'
    -> {"event": "ready", "pid": 1234, "uvloop": true}
    <- {"cmd": "add", "n": 6}            -> {"ok": true, "ports": [40001, ...], "participants": 6}
    <- {"cmd": "stats", "mark": true}    -> {"ok": true, "ticks": ..., "lateness_p99_ms": ...}
    <- {"cmd": "quit"}

or from Python with :class:`RelayProcess`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bridge.benchmark.control import WorkerProcess, install_uvloop, serve_commands
from bridge.codecs.g711 import ULAW_DECODE, ULAW_ENCODE
from bridge.media.clock import lateness_summary

__all__ = ["Relay", "RelayConfig", "RelayProcess", "RelayStats", "main"]

FRAME_SECONDS = 0.020
SAMPLES = 160
HEADER = 12
PACKET = HEADER + SAMPLES
PCMU = 0
_SILENT_PACKET = bytes([0x80, PCMU]) + bytes(10) + b"\xff" * SAMPLES
_SEQ_TS = struct.Struct("!HI")


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayConfig:
    """Relay settings: room size, the most participants it will be asked to hold, bind host."""

    rooms_of: int = 3
    max_participants: int = 1200
    host: str = "127.0.0.1"
    early_tolerance: float = 0.0005  # a timer firing earlier than this is re-armed

    def __post_init__(self) -> None:
        if self.rooms_of < 1 or self.max_participants < 1:
            raise ValueError("rooms_of and max_participants must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayStats:
    """Tick statistics over a window: lateness of the tick callback past its deadline."""

    participants: int
    ticks: int
    missed_ticks: int
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    packets_received: int
    packets_sent: int
    send_errors: int
    cpu_seconds: float
    wall_seconds: float


class _Leg(asyncio.DatagramProtocol):
    """Receive side of one participant: keep the last PCMU packet, latch the source address."""

    __slots__ = ("addrs", "index", "last", "relay")

    def __init__(self, relay: Relay, index: int) -> None:
        self.relay = relay
        self.index = index
        self.last = relay.last
        self.addrs = relay.addrs

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) == PACKET and data[1] & 0x7F == PCMU:
            self.last[self.index] = data
            self.addrs[self.index] = addr
            self.relay.received += 1


def _factory(protocol: _Leg) -> Callable[[], _Leg]:
    return lambda: protocol


class Relay:
    """The relay engine inside a running asyncio loop: :meth:`add` participants, :meth:`start`
    the tick, read :meth:`stats`."""

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        n, capacity = config.rooms_of, math.ceil(config.max_participants / config.rooms_of)
        rows = capacity * n
        self.last: list[bytes] = []
        self.addrs: list[tuple[str | Any, int] | None] = []
        self.transports: list[asyncio.DatagramTransport] = []
        self.ports: list[int] = []
        # Preallocated tick buffers (rows padded to whole rooms; padding rows stay silent).
        self._decode = ULAW_DECODE.astype(np.int32)
        self._pcm = np.zeros((rows, SAMPLES), dtype=np.int32)
        self._room_sum = np.zeros((capacity, SAMPLES), dtype=np.int32)
        self._mix = np.zeros((rows, SAMPLES), dtype=np.int32)
        self._mix16 = np.zeros((rows, SAMPLES), dtype=np.int16)
        self._out = np.zeros((rows, PACKET), dtype=np.uint8)
        self._out[:, 0] = 0x80
        self._out[:, 1] = PCMU
        ssrc = np.arange(rows, dtype=">u4") + 0x5EED0000
        self._out[:, 8:12] = ssrc.view(np.uint8).reshape(rows, 4)
        self.received = 0
        self.sent = 0
        self.send_errors = 0
        self._start = 0.0
        self._frame = 0
        self._timer: asyncio.TimerHandle | None = None
        self._window_lateness: list[float] = []
        self._window_ticks = 0
        self._window_missed = 0
        self._window_received = 0
        self._window_sent = 0
        self._window_errors = 0
        self._window_cpu = time.process_time()
        self._window_wall = time.monotonic()

    @property
    def participants(self) -> int:
        """Participants added so far."""
        return len(self.last)

    async def add(self, count: int) -> list[int]:
        """Open ``count`` more participant sockets; return their UDP ports."""
        if self.participants + count > self.config.max_participants:
            raise ValueError(f"relay holds at most {self.config.max_participants} participants")
        loop = asyncio.get_running_loop()
        ports = []
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((self.config.host, 0))
            sock.setblocking(False)
            leg = _Leg(self, self.participants)
            transport, _ = await loop.create_datagram_endpoint(_factory(leg), sock=sock)
            # The tick may run during the await above: grow the three lists together after it.
            self.last.append(_SILENT_PACKET)
            self.addrs.append(None)
            self.transports.append(transport)
            port = int(sock.getsockname()[1])
            self.ports.append(port)
            ports.append(port)
        return ports

    def start(self) -> None:
        """Start the 20 ms tick on absolute deadlines ``start + k * 20 ms``."""
        loop = asyncio.get_running_loop()
        self._start = time.monotonic()
        self._frame = 0
        self._timer = loop.call_later(FRAME_SECONDS, self._on_timer)

    def stop(self) -> None:
        """Stop the tick and close every socket."""
        if self._timer is not None:
            self._timer.cancel()
        for transport in self.transports:
            transport.close()

    def _on_timer(self) -> None:
        loop = asyncio.get_running_loop()
        # time.monotonic(), not loop.time(): uvloop's loop time is cached per iteration and in
        # whole milliseconds, which would hide lateness.
        now = time.monotonic()
        next_deadline = self._start + (self._frame + 1) * FRAME_SECONDS
        if now < next_deadline - self.config.early_tolerance:  # uvloop may fire early
            self._timer = loop.call_later(next_deadline - now, self._on_timer)
            return
        due = int((now - self._start) / FRAME_SECONDS)
        due = max(due, self._frame + 1)
        self._window_missed += due - self._frame - 1
        self._window_lateness.append(max(0.0, now - (self._start + due * FRAME_SECONDS)))
        self._window_ticks += 1
        self._frame = due
        self.tick(due)
        delay = self._start + (due + 1) * FRAME_SECONDS - time.monotonic()
        self._timer = loop.call_later(max(0.0, delay), self._on_timer)

    def tick(self, frame: int) -> None:
        """Mix and send frame number ``frame`` (sequence number and timestamp derive from it)."""
        count = self.participants
        if count == 0:
            return
        n = self.config.rooms_of
        rooms = -(-count // n)
        rows = rooms * n
        packets = np.frombuffer(b"".join(self.last), dtype=np.uint8).reshape(count, PACKET)
        pcm = self._pcm[:rows]
        np.take(self._decode, packets[:, HEADER:], out=pcm[:count])
        room_sum = self._room_sum[:rooms]
        np.sum(pcm.reshape(rooms, n, SAMPLES), axis=1, out=room_sum)
        mix = self._mix[:rows]
        np.subtract(
            room_sum[:, None, :],
            pcm.reshape(rooms, n, SAMPLES),
            out=mix.reshape(rooms, n, SAMPLES),
        )
        np.clip(mix, -32768, 32767, out=mix)
        mix16 = self._mix16[:count]
        np.copyto(mix16, mix[:count], casting="unsafe")
        out = self._out[:count]
        np.take(ULAW_ENCODE, mix16.view(np.uint16), out=out[:, HEADER:])
        seq_ts = _SEQ_TS.pack(frame & 0xFFFF, (frame * SAMPLES) & 0xFFFFFFFF)
        out[:, 2:8] = np.frombuffer(seq_ts, dtype=np.uint8)
        blob = memoryview(out.tobytes())
        sent = 0
        offset = 0
        for transport, addr in zip(self.transports, self.addrs, strict=True):
            if addr is not None:
                transport.sendto(blob[offset : offset + PACKET], addr)
                sent += 1
            offset += PACKET
        self.sent += sent

    def stats(self, *, mark: bool = True) -> RelayStats:
        """Statistics since the last mark; ``mark`` starts a new window."""
        p50, p99, worst = lateness_summary(self._window_lateness)
        cpu, wall = time.process_time(), time.monotonic()
        result = RelayStats(
            participants=self.participants,
            ticks=self._window_ticks,
            missed_ticks=self._window_missed,
            lateness_p50_ms=p50,
            lateness_p99_ms=p99,
            lateness_max_ms=worst,
            packets_received=self.received - self._window_received,
            packets_sent=self.sent - self._window_sent,
            send_errors=self.send_errors - self._window_errors,
            cpu_seconds=cpu - self._window_cpu,
            wall_seconds=wall - self._window_wall,
        )
        if mark:
            self._window_lateness = []
            self._window_ticks = self._window_missed = 0
            self._window_received, self._window_sent = self.received, self.sent
            self._window_errors = self.send_errors
            self._window_cpu, self._window_wall = cpu, wall
        return result


async def _serve(config: RelayConfig, uvloop: bool) -> None:
    relay = Relay(config)
    relay.start()

    async def add(command: dict[str, Any]) -> dict[str, Any]:
        ports = await relay.add(int(command["n"]))
        return {"ports": ports, "participants": relay.participants}

    async def stats(command: dict[str, Any]) -> dict[str, Any]:
        return asdict(relay.stats(mark=bool(command.get("mark", True))))

    try:
        await serve_commands({"pid": os.getpid(), "uvloop": uvloop}, {"add": add, "stats": stats})
    finally:
        relay.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bridge.benchmark.relay --config JSON``."""
    parser = argparse.ArgumentParser(prog="python -m bridge.benchmark.relay")
    parser.add_argument("--config", default="{}", help="RelayConfig fields as a JSON object")
    args = parser.parse_args(argv)
    config = RelayConfig(**json.loads(args.config))
    uvloop = install_uvloop()
    asyncio.run(_serve(config, uvloop))
    return 0


class RelayProcess(WorkerProcess):
    """The relay in its own process: ``add(n) -> ports``, ``stats() -> RelayStats``."""

    def __init__(self, config: RelayConfig | None = None) -> None:
        super().__init__("bridge.benchmark.relay", asdict(config or RelayConfig()))

    def add(self, count: int) -> list[int]:
        """Add ``count`` participants; return their RTP ports on the relay host."""
        return [int(port) for port in self.request("add", n=count)["ports"]]

    def stats(self, *, mark: bool = True) -> RelayStats:
        """Tick statistics since the last mark (the relay's own view, CPU included)."""
        reply = self.request("stats", mark=mark)
        return RelayStats(**{k: v for k, v in reply.items() if k != "ok"})


if __name__ == "__main__":
    raise SystemExit(main())
