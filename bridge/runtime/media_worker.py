"""A media worker process: conference rooms mixed on a core of their own (``[media] workers``).

The main process (SIP, the IVR, :mod:`bridge.runtime.workers`) starts each worker as
``python -m bridge.runtime.media_worker --fd N`` with one end of an ``AF_UNIX``
``SOCK_SEQPACKET`` socket pair. Over it the main process sends commands (frozen dataclasses,
pickled) and hands over the legs' bound RTP and RTCP sockets (``SCM_RIGHTS``,
``socket.send_fds``); the worker answers with the engine's events, exported legs (their
sockets go back the same way) and statistics.

The worker is a plain synchronous loop, no asyncio: ``epoll`` waits on the control socket
until the next deadline of the media clock (:class:`~bridge.media.clock.MediaClock`,
``time.monotonic()``); at each deadline it drains every leg's sockets into the engine
(:class:`~bridge.runtime.media.RtpIo`), ticks, sends, and passes the tick's events on. A leg
imported here continues its RTP stream (same ports, SSRC, sequence and timestamp clock), so
the peer sees nothing of the move.

Framing: one message is a pickle split into datagrams of at most :data:`CHUNK` bytes, each
prefixed with ``+`` (more follows) or ``.`` (last); descriptors ride on the first datagram.
Both ends send without blocking and queue what the socket does not take yet.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import os
import pickle
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bridge.media.clock import MediaClock, lateness_summary
from bridge.media.engine import LegMedia, LegTransfer, MediaEngine, MediaEvent
from bridge.runtime.media import RtpIo

__all__ = [
    "AddInfoDigit",
    "Channel",
    "Events",
    "ExportLeg",
    "Exported",
    "ImportLeg",
    "MoveLeg",
    "Play",
    "PlayRoom",
    "Quit",
    "Ready",
    "RemoveLeg",
    "SetDeaf",
    "SetGain",
    "SetMuted",
    "Stats",
    "StatsRequest",
    "StopPrompts",
    "UpdateLeg",
    "WorkerStats",
]

log = logging.getLogger("bridge.worker")

CHUNK = 60_000  # payload bytes per datagram
MORE, LAST = b"+", b"."
MAX_FDS = 8
SOCKET_BUFFER = 4 << 20  # asked for; the kernel caps it (net.core.wmem_max / rmem_max)
LATENESS_KEEP = 15_000  # lateness samples kept between two stats marks (5 minutes)

Clip = npt.NDArray[np.int16]


# -- messages: main -> worker -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportLeg:
    """Take over a leg; its RTP and RTCP sockets come with the message."""

    state: LegTransfer


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportLeg:
    """Give a leg back: answered by :class:`Exported` carrying its sockets."""

    leg_id: str
    request: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveLeg:
    leg_id: str
    room: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RemoveLeg:
    """The call ended: RTCP BYE, close the sockets."""

    leg_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateLeg:
    leg_id: str
    media: LegMedia


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMuted:
    leg_id: str
    value: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SetDeaf:
    leg_id: str
    value: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SetGain:
    leg_id: str
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Play:
    leg_id: str
    clips: tuple[Clip, ...]
    loop: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayRoom:
    room: str
    clips: tuple[Clip, ...]
    loop: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StopPrompts:
    leg_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddInfoDigit:
    """A SIP INFO digit (the worker stamps it with its own clock)."""

    leg_id: str
    digit: str
    duration_ms: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsRequest:
    """Answered by :class:`Stats`; ``mark`` starts a new measuring window."""

    request: int
    mark: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit:
    """Close every leg's sockets (no RTCP BYE: the main process ended the calls) and exit."""


Command = (ImportLeg | ExportLeg | MoveLeg | RemoveLeg | UpdateLeg | SetMuted | SetDeaf | SetGain
           | Play | PlayRoom | StopPrompts | AddInfoDigit | StatsRequest | Quit)


# -- messages: worker -> main -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    pid: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Events:
    """What one tick produced (digits, talking changes, finished prompts), in order."""

    events: tuple[MediaEvent, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Exported:
    """The answer to :class:`ExportLeg`: the leg's state (None: no such leg here) and, with
    the message, its two sockets."""

    request: int
    state: LegTransfer | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerStats:
    """A worker's figures since the last mark (``legs``: now)."""

    pid: int
    legs: int
    ticks: int
    skipped_ticks: int
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    cpu_seconds: float
    packets_sent: int
    packets_received: int
    send_errors: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    request: int
    stats: WorkerStats


Reply = Ready | Events | Exported | Stats


# -- framing ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Outgoing:
    data: bytes
    fds: list[int] = field(default_factory=list)  # owned: closed once sent


class Channel:
    """Pickled messages (and descriptors) over a non-blocking ``SOCK_SEQPACKET`` socket.

    :meth:`send` queues and writes what the socket takes; descriptors given to it are owned by
    the channel from then on (closed once sent, so the caller may forget them at once).
    :meth:`receive` returns every complete message waiting, with the descriptors that came
    with it, and raises ``EOFError`` when the other end is gone.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        sock.setblocking(False)
        for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            with contextlib.suppress(OSError):  # else kept at the default size
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        self._out: deque[_Outgoing] = deque()
        self._parts: list[bytes] = []
        self._fds: list[int] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def pending(self) -> bool:
        """Something is queued that the socket did not take yet."""
        return bool(self._out)

    def send(self, message: object, fds: Sequence[int] = ()) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        owned = list(fds)
        for start in range(0, max(len(data), 1), CHUNK):
            piece = data[start : start + CHUNK]
            flag = LAST if start + CHUNK >= len(data) else MORE
            self._out.append(_Outgoing(flag + piece, owned))
            owned = []
        self.flush()

    def flush(self) -> bool:
        """Write what the socket takes now; True when nothing is left queued."""
        out = self._out
        while out:
            head = out[0]
            try:
                if head.fds:
                    socket.send_fds(self.sock, [head.data], head.fds)
                else:
                    self.sock.send(head.data)
            except (BlockingIOError, InterruptedError):
                return False
            out.popleft()
            for fd in head.fds:
                os.close(fd)
        return True

    def receive(self) -> list[tuple[object, list[int]]]:
        messages: list[tuple[object, list[int]]] = []
        while True:
            try:
                data, fds, flags, _ = socket.recv_fds(self.sock, CHUNK + 1, MAX_FDS)
            except (BlockingIOError, InterruptedError):
                return messages
            except ConnectionError as exc:
                raise EOFError(str(exc)) from None
            if not data:
                for fd in fds:
                    os.close(fd)
                raise EOFError("the other end closed the channel")
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                for fd in fds:
                    os.close(fd)
                raise EOFError("a truncated message: the channel is out of step")
            self._fds.extend(fds)
            self._parts.append(data[1:])
            if data[:1] == LAST:
                body = b"".join(self._parts)
                got, self._parts, self._fds = self._fds, [], []
                try:
                    message = pickle.loads(body)
                except Exception as exc:  # not ours, or another version: the channel is broken
                    for fd in got:
                        os.close(fd)
                    raise EOFError(f"undecodable message: {exc!r}") from exc
                messages.append((message, got))

    def close(self) -> None:
        for item in self._out:
            for fd in item.fds:
                os.close(fd)
        self._out.clear()
        for fd in self._fds:
            os.close(fd)
        self._fds = []
        self.sock.close()


# -- the worker ---------------------------------------------------------------------------------


class MediaWorker:
    """One worker's engine, sockets, clock and control channel."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.engine = MediaEngine()
        self.io = RtpIo(self.engine)
        self.clock = MediaClock(start=time.monotonic() + 0.02)
        self.running = True
        self.ticks = 0
        self._lateness: list[float] = []
        # ticks, skipped, cpu, sent, received, send errors at the last mark
        self._mark = (0, 0, time.process_time(), 0, 0, 0)

    def run(self) -> int:
        """Serve until :class:`Quit` or until the main process is gone."""
        fd = self.channel.fileno()
        epoll = select.epoll()
        epoll.register(fd, select.EPOLLIN)
        writing = False
        self.channel.send(Ready(pid=os.getpid()))
        try:
            while self.running:
                if self.channel.pending != writing:
                    writing = self.channel.pending
                    epoll.modify(fd, select.EPOLLIN | (select.EPOLLOUT if writing else 0))
                timeout = max(0.0, self.clock.deadline() - time.monotonic())
                for _, mask in epoll.poll(timeout):
                    if mask & select.EPOLLOUT:
                        self.channel.flush()
                    if mask & (select.EPOLLIN | select.EPOLLHUP | select.EPOLLERR):
                        self._read()
                if self.running:
                    self._clock()
        except EOFError:
            log.info("main process gone: worker %d exits", os.getpid())
        finally:
            epoll.close()
            self.io.close_all()
            self.channel.close()
        return 0

    def _read(self) -> None:
        for message, fds in self.channel.receive():
            try:
                self.handle(message, fds)
            except Exception:  # one command failed (a leg gone meanwhile): the rest go on
                log.exception("worker command %r failed", type(message).__name__)
            if not self.running:
                return

    def _clock(self) -> None:
        now = time.monotonic()
        plan = self.clock.plan(now)
        if not plan.run:
            return
        if len(self._lateness) < LATENESS_KEEP:
            self._lateness.append(max(0.0, plan.lateness))
        self.ticks += 1
        engine, io = self.engine, self.io
        try:
            io.run_ticks(plan.run, now, time.time())
        except Exception:  # one leg's bad state must not silence every call of the worker
            log.exception("media tick failed")
        events = engine.events()
        if events:
            self.channel.send(Events(events=tuple(events)))

    def handle(self, message: object, fds: list[int]) -> None:
        """Apply one command of the main process."""
        engine = self.engine
        if not isinstance(message, ImportLeg):
            for fd in fds:  # only an import brings descriptors
                os.close(fd)
        match message:
            case ImportLeg(state=state):
                self._import(state, fds)
            case ExportLeg(leg_id=leg_id, request=request):
                if leg_id not in engine:
                    self.channel.send(Exported(request=request, state=None))
                    return
                state = engine.export_leg(leg_id)
                socks = self.io.release(leg_id)
                assert socks is not None
                self.channel.send(Exported(request=request, state=state),
                                  [sock.detach() for sock in socks])
            case MoveLeg(leg_id=leg_id, room=room):
                engine.move_leg(leg_id, room)
            case RemoveLeg(leg_id=leg_id):
                if leg_id in engine:
                    self.io.send(engine.remove_leg(leg_id, time.monotonic(), time.time()))
                self.io.close(leg_id)
            case UpdateLeg(leg_id=leg_id, media=media):
                engine.update_leg(leg_id, media)
            case SetMuted(leg_id=leg_id, value=value):
                engine.set_muted(leg_id, value)
            case SetDeaf(leg_id=leg_id, value=value):
                engine.set_deaf(leg_id, value)
            case SetGain(leg_id=leg_id, value=gain):
                engine.set_gain(leg_id, gain)
            case Play(leg_id=leg_id, clips=clips, loop=loop):
                engine.play(leg_id, clips, loop=loop)
            case PlayRoom(room=room, clips=clips, loop=loop):
                engine.play_room(room, clips, loop=loop)
            case StopPrompts(leg_id=leg_id):
                engine.stop_prompts(leg_id)
            case AddInfoDigit(leg_id=leg_id, digit=digit, duration_ms=duration):
                engine.add_info_digit(leg_id, digit, duration, time.monotonic())
            case StatsRequest(request=request, mark=mark):
                self.channel.send(Stats(request=request, stats=self.stats(mark=mark)))
            case Quit():
                self.running = False
            case _:
                log.warning("unknown command %r", message)

    def _import(self, state: LegTransfer, fds: list[int]) -> None:
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            raise ValueError(f"leg {state.leg_id}: {len(fds)} descriptors, not 2")
        rtp, rtcp = (socket.socket(fileno=fd) for fd in fds)
        handles = self.io.adopt(state.leg_id, rtp, rtcp)
        try:
            self.engine.import_leg(state, now=time.monotonic(), rtp_handle=handles[0],
                                   rtcp_handle=handles[1])
        except Exception:
            self.io.close(state.leg_id)
            raise
        self.io.attach(state.leg_id)  # its RTP straight to its session

    def stats(self, *, mark: bool) -> WorkerStats:
        ticks0, skipped0, cpu0, sent0, received0, errors0 = self._mark
        cpu = time.process_time()
        sent = self.engine.counters.packets_sent
        received = self.io.received
        skipped = self.clock.skipped_total
        errors = self.io.send_errors
        p50, p99, worst = lateness_summary(self._lateness)
        result = WorkerStats(
            pid=os.getpid(), legs=self.engine.leg_count,
            ticks=self.ticks - ticks0, skipped_ticks=skipped - skipped0,
            lateness_p50_ms=p50, lateness_p99_ms=p99, lateness_max_ms=worst,
            cpu_seconds=cpu - cpu0, packets_sent=sent - sent0,
            packets_received=received - received0, send_errors=errors - errors0,
        )
        if mark:
            self._mark = (self.ticks, skipped, cpu, sent, received, errors)
            self._lateness = []
        return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bridge.runtime.media_worker")
    parser.add_argument("--fd", type=int, required=True,
                        help="the worker's end of the control socket pair")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s worker[{os.getpid()}]: %(message)s")
    # Ctrl-C and a service manager's SIGTERM reach the whole process group: the main process
    # ends the calls (BYE) and then tells the worker to quit; the worker must live until then.
    # It exits by itself when the main process is gone (the control socket closes).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    channel = Channel(socket.socket(fileno=args.fd))
    worker = MediaWorker(channel)
    gc.freeze()  # modules and the engine live as long as the worker: no full passes over them
    return worker.run()


if __name__ == "__main__":
    # Run the module under its own name, not as __main__: the message classes must pickle as
    # bridge.runtime.media_worker.X on both ends.
    import importlib

    sys.exit(importlib.import_module("bridge.runtime.media_worker").main())
