"""Media worker processes: use every core (``[media] workers``).

With ``workers = 0`` everything runs in the one asyncio process and :class:`LocalMedia` hands
the controller's calls straight to the :class:`~bridge.media.engine.MediaEngine`. With
``workers = N`` a :class:`WorkerPool` starts N worker processes
(:mod:`bridge.runtime.media_worker`) and stands in for the engine:

* SIP, the IVR and the media of legs not in a conference (their own room ``leg:<call>``) stay
  in the main process.
* When a leg moves into any other room (a conference's media room), its media moves to the
  worker that owns that room: a room is given to the worker with the fewest legs when it is
  first used, all legs of a room live in that worker, and the room is forgotten when its last
  leg leaves. Moving a leg back to its own room brings it back to the main process.
* A move exports the leg's state from one engine and imports it into the other; its two bound
  UDP sockets travel with it (``SCM_RIGHTS``), so the peer sees the same ports, the same SSRC
  and continuing sequence numbers and timestamps. Jitter buffer, digit and prompt state start
  afresh; prompts still queued for the leg are dropped (counted as finished).
* Prompt tickets stay synchronous: the pool mirrors each target's enqueued-clip count (what
  ``play`` returns) and learns finished counts from ``PromptFinished``; per leg an offset keeps
  the counts growing across moves, as :class:`~bridge.media.prompts.PromptPlayer` tickets do.
* A worker that dies: its legs are reported to ``on_lost`` (the application hangs them up),
  their ports are freed when the calls end, and a fresh worker takes its place: at once, or
  :data:`RESTART_DELAY` later when it died within :data:`RESTART_HOLDOFF` of its start (no
  respawning in a loop; meanwhile new rooms go to the other workers or the main process).

Moving a leg out of a worker waits for the worker's answer (a few hundred microseconds; at
most :data:`EXPORT_TIMEOUT`): only a kicked participant goes that way.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from bridge.media.engine import LegMedia, LegTransfer, MediaEvent, PromptFinished
from bridge.runtime.media import MediaRuntime
from bridge.runtime.media_worker import (
    AddInfoDigit,
    Channel,
    Events,
    Exported,
    ExportLeg,
    ImportLeg,
    MoveLeg,
    Play,
    PlayRoom,
    Quit,
    Ready,
    RemoveLeg,
    SetDeaf,
    SetGain,
    SetMuted,
    Stats,
    StatsRequest,
    StopPrompts,
    UpdateLeg,
    WorkerStats,
)

__all__ = ["LocalMedia", "MediaControl", "WorkerPool", "WorkerStats"]

log = logging.getLogger("bridge.workers")

Clip = npt.NDArray[np.int16]
EXPORT_TIMEOUT = 2.0  # seconds a worker has to give a leg back
START_TIMEOUT = 20.0  # seconds a worker has to start (import numpy, say ready)
QUIT_TIMEOUT = 3.0  # seconds a worker has to exit after Quit before it is killed
RESTART_HOLDOFF = 5.0  # a worker that dies younger than this is not replaced at once ...
RESTART_DELAY = 5.0  # ... but this many seconds later (a worker that cannot live: no loop)


class MediaControl(Protocol):
    """The media calls of the controllers: the local engine, or the worker pool."""

    def __contains__(self, leg_id: object) -> bool: ...

    def add_info_digit(self, leg_id: str, digit: str, duration_ms: int | None,
                       now: float) -> None: ...

    def move_leg(self, leg_id: str, room: str) -> None: ...

    def update_leg(self, leg_id: str, media: LegMedia) -> None: ...

    def remove_leg(self, leg_id: str) -> None: ...

    def set_muted(self, leg_id: str, muted: bool) -> None: ...

    def set_deaf(self, leg_id: str, deaf: bool) -> None: ...

    def set_gain(self, leg_id: str, gain: float) -> None: ...

    def play(self, leg_id: str, clips: Iterable[Clip], *, loop: bool = False) -> int: ...

    def play_room(self, room: str, clips: Iterable[Clip], *, loop: bool = False) -> int: ...

    def stop_prompts(self, leg_id: str) -> None: ...

    def prompt_count(self, target: str) -> int: ...

    def room_legs(self, room: str) -> set[str]: ...


class LocalMedia:
    """:class:`MediaControl` of a single process: the runtime's engine itself."""

    def __init__(self, runtime: MediaRuntime) -> None:
        self.runtime = runtime

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self.runtime.engine

    def add_info_digit(self, leg_id: str, digit: str, duration_ms: int | None,
                       now: float) -> None:
        self.runtime.engine.add_info_digit(leg_id, digit, duration_ms, now)

    def move_leg(self, leg_id: str, room: str) -> None:
        self.runtime.engine.move_leg(leg_id, room)

    def update_leg(self, leg_id: str, media: LegMedia) -> None:
        self.runtime.engine.update_leg(leg_id, media)

    def remove_leg(self, leg_id: str) -> None:
        self.runtime.remove_leg(leg_id)

    def set_muted(self, leg_id: str, muted: bool) -> None:
        self.runtime.engine.set_muted(leg_id, muted)

    def set_deaf(self, leg_id: str, deaf: bool) -> None:
        self.runtime.engine.set_deaf(leg_id, deaf)

    def set_gain(self, leg_id: str, gain: float) -> None:
        self.runtime.engine.set_gain(leg_id, gain)

    def play(self, leg_id: str, clips: Iterable[Clip], *, loop: bool = False) -> int:
        return self.runtime.engine.play(leg_id, clips, loop=loop)

    def play_room(self, room: str, clips: Iterable[Clip], *, loop: bool = False) -> int:
        return self.runtime.engine.play_room(room, clips, loop=loop)

    def stop_prompts(self, leg_id: str) -> None:
        self.runtime.engine.stop_prompts(leg_id)

    def prompt_count(self, target: str) -> int:
        return self.runtime.engine.prompt_count(target)

    def room_legs(self, room: str) -> set[str]:
        return self.runtime.engine.room_legs(room)


# -- the pool -----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    channel: Channel
    started: float
    ready: asyncio.Future[int]
    legs: set[str] = field(default_factory=set)
    rooms: set[str] = field(default_factory=set)
    writing: bool = False
    alive: bool = True

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(slots=True)
class _Prompts:
    """Prompt counts of one target as the controller sees them: ``base`` + the counts of the
    player in the engine the target lives in now."""

    base: int = 0
    enqueued: int = 0  # what the last ticket was (global)
    finished: int = 0  # what PromptFinished said (global), for targets in a worker
    told: int = 0  # the highest count a PromptFinished handed to the controller (global)


def _source_root() -> str:
    """The directory holding the ``bridge`` package, for the worker's ``sys.path``."""
    return str(Path(__file__).resolve().parents[2])


class WorkerPool:
    """:class:`MediaControl` over the main process's runtime and N media worker processes.

    ``on_event`` gets every media event (the main process's, after :meth:`local_event`, and
    the workers'), ``on_lost`` the legs of a worker that died.
    """

    def __init__(self, runtime: MediaRuntime, count: int, *,
                 on_event: Callable[[MediaEvent], None],
                 on_lost: Callable[[list[str]], None],
                 log_level: str = "INFO") -> None:
        if count < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.runtime = runtime
        self.count = count
        self.on_event = on_event
        self.on_lost = on_lost
        self.log_level = log_level
        self.workers: list[_Worker] = []
        self._leg_worker: dict[str, _Worker] = {}
        self._leg_room: dict[str, str] = {}
        self._room_worker: dict[str, _Worker] = {}
        self._room_legs: dict[str, set[str]] = {}
        self._orphans: set[str] = set()  # legs of a dead worker, until their calls end
        self._prompts: dict[str, _Prompts] = {}
        self._requests = itertools.count(1)
        self._stats: dict[int, tuple[_Worker, asyncio.Future[WorkerStats]]] = {}
        self._restarts: dict[int, asyncio.TimerHandle] = {}  # by worker index
        self.restarted = 0  # workers replaced after dying (for /metrics)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = False
        self.deaths = 0
        self.moves = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers and wait until each has said it is ready."""
        self._loop = asyncio.get_running_loop()
        for index in range(self.count):
            self._spawn(index)
        try:
            pids = await asyncio.wait_for(
                asyncio.gather(*(w.ready for w in self.workers)), START_TIMEOUT)
        except Exception:
            await self.close()
            raise
        log.info("%d media worker(s) started: pid %s", len(pids),
                 ", ".join(str(p) for p in pids))

    def _spawn(self, index: int) -> _Worker:
        loop = self._loop
        assert loop is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (_source_root(), env.get("PYTHONPATH", "")) if p)
        env.setdefault("OPENBLAS_NUM_THREADS", "1")  # see cli.serve: BLAS threads spin
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "bridge.runtime.media_worker",
                 "--fd", str(theirs.fileno()), "--log-level", self.log_level],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        worker = _Worker(index=index, process=process, channel=Channel(ours),
                         started=time.monotonic(), ready=loop.create_future())
        worker.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        loop.add_reader(worker.channel.fileno(), self._readable, worker)
        self.workers.append(worker)
        return worker

    async def close(self) -> None:
        """Tell every worker to quit (after the commands queued before), wait, kill
        stragglers. The legs still in workers are not hung up here: the application ends
        the calls first."""
        self._closing = True
        for timer in self._restarts.values():
            timer.cancel()
        self._restarts.clear()
        workers = [w for w in self.workers if w.alive]
        for worker in workers:
            self._send(worker, Quit())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + QUIT_TIMEOUT
        for worker in workers:
            while worker.process.poll() is None and loop.time() < deadline:
                await asyncio.sleep(0.01)  # the writer callback flushes what is queued
            if worker.process.poll() is None:
                log.warning("media worker %d (pid %d) did not quit: killed", worker.index,
                            worker.pid)
                worker.process.kill()
                worker.process.wait()
            self._forget(worker)
        self.workers.clear()

    def _forget(self, worker: _Worker) -> None:
        if not worker.alive:
            return
        worker.alive = False
        loop = self._loop
        if loop is not None:
            loop.remove_reader(worker.channel.fileno())
            if worker.writing:
                loop.remove_writer(worker.channel.fileno())
        worker.writing = False
        worker.channel.close()
        if not worker.ready.done():
            worker.ready.set_exception(RuntimeError(f"media worker {worker.index} died"))

    # -- the control channel ------------------------------------------------------------------

    def _send(self, worker: _Worker, message: object, fds: list[int] | None = None) -> None:
        if not worker.alive:
            for fd in fds or ():
                os.close(fd)
            return
        try:
            worker.channel.send(message, fds or ())
        except OSError:  # broken pipe: the worker is dying; its reader sees the end
            log.debug("media worker %d: send failed", worker.index, exc_info=True)
            return
        self._want_write(worker)

    def _want_write(self, worker: _Worker) -> None:
        loop = self._loop
        if loop is None or not worker.alive:
            return
        pending = worker.channel.pending
        if pending and not worker.writing:
            loop.add_writer(worker.channel.fileno(), self._writable, worker)
        elif not pending and worker.writing:
            loop.remove_writer(worker.channel.fileno())
        worker.writing = pending

    def _writable(self, worker: _Worker) -> None:
        try:
            worker.channel.flush()
        except OSError:
            log.debug("media worker %d: flush failed", worker.index, exc_info=True)
        self._want_write(worker)

    def _readable(self, worker: _Worker) -> None:
        try:
            messages = worker.channel.receive()
        except (EOFError, OSError):
            self._died(worker)
            return
        for message, fds in messages:
            for fd in fds:  # only an export answer brings descriptors, and it is awaited
                os.close(fd)
            self._dispatch(self._take(worker, message))

    def _take(self, worker: _Worker, message: object) -> list[MediaEvent]:
        """Book a worker's message; returns the events to hand on."""
        match message:
            case Events(events=events):
                return [self._worker_event(worker, e) for e in events]
            case Ready(pid=pid):
                if not worker.ready.done():
                    worker.ready.set_result(pid)
            case Stats(request=request, stats=stats):
                pending = self._stats.pop(request, None)
                if pending is not None and not pending[1].done():
                    pending[1].set_result(stats)
            case Exported(state=state):
                # an answer nobody waits for any more (timed out): the leg is gone
                log.warning("media worker %d: late export answer for %s dropped", worker.index,
                            state.leg_id if state is not None else "?")
            case _:
                log.warning("media worker %d: unknown message %r", worker.index, message)
        return []

    def _dispatch(self, events: list[MediaEvent]) -> None:
        for event in events:
            try:
                self.on_event(event)
            except Exception:  # the application's handler failed: log it, keep reading
                log.exception("media event handler failed for %r", event)

    def _worker_event(self, worker: _Worker, event: MediaEvent) -> MediaEvent:
        if isinstance(event, PromptFinished):
            # Counts exist for every target played to through the pool; none: the target is
            # gone meanwhile (hung up, room emptied), and must not be brought back here.
            counts = self._prompts.get(event.target)
            if counts is None:
                return event
            total = counts.base + event.count
            counts.finished = max(counts.finished, total)
            counts.told = max(counts.told, total)
            return PromptFinished(target=event.target, count=total)
        return event

    def local_event(self, event: MediaEvent) -> MediaEvent:
        """An event of the main process's engine, in the counts the controller sees."""
        if isinstance(event, PromptFinished):
            counts = self._prompts.get(event.target)
            if counts is not None:
                total = counts.base + event.count
                counts.told = max(counts.told, total)
                if counts.base:
                    return PromptFinished(target=event.target, count=total)
        return event

    # -- workers dying ------------------------------------------------------------------------

    def _died(self, worker: _Worker) -> None:
        if not worker.alive:
            return
        self._forget(worker)
        for request, (owner, future) in list(self._stats.items()):
            if owner is worker:
                del self._stats[request]
                future.cancel()
        with contextlib.suppress(ValueError):
            self.workers.remove(worker)
        if worker.process.poll() is None:
            worker.process.kill()
        status = worker.process.wait()
        legs = sorted(worker.legs)
        for leg_id in legs:
            self._leg_worker.pop(leg_id, None)
            self._leg_room.pop(leg_id, None)
            self._orphans.add(leg_id)
        for room in worker.rooms:
            self._room_worker.pop(room, None)
            self._room_legs.pop(room, None)
            self._prompts.pop(f"room:{room}", None)
        if self._closing:
            return
        self.deaths += 1
        log.error("media worker %d (pid %d) died with status %s: %d call(s) lose their media "
                  "and are hung up", worker.index, worker.pid, status, len(legs))
        age = time.monotonic() - worker.started
        if age >= RESTART_HOLDOFF:
            self._restart(worker.index)
        elif worker.index not in self._restarts:
            # Not at once: a worker that cannot live (its start fails, a poison input) must
            # not be respawned in a tight loop. Meanwhile new rooms go to the other workers,
            # or run in the main process when there is none.
            log.error("media worker %d died %.1f s after its start: restarted in %.0f s",
                      worker.index, age, RESTART_DELAY)
            loop = self._loop
            assert loop is not None
            self._restarts[worker.index] = loop.call_later(
                RESTART_DELAY, self._restart, worker.index)
        if legs:
            self.on_lost(legs)

    def _restart(self, index: int) -> None:
        self._restarts.pop(index, None)
        if self._closing:
            return
        try:
            replacement = self._spawn(index)
        except OSError:
            log.exception("media worker %d could not be restarted", index)
            return
        self.restarted += 1
        log.info("media worker %d restarted: pid %d", index, replacement.pid)

    # -- placement ----------------------------------------------------------------------------

    def _destination(self, leg_id: str, room: str) -> _Worker | None:
        """Where ``room``'s media runs (None: the main process); assigns new rooms."""
        if room == f"leg:{leg_id}":
            return None
        worker = self._room_worker.get(room)
        if worker is not None:
            return worker
        if self.runtime.engine.room_legs(room):
            return None  # already in the main process (no worker was alive when it opened)
        live = [w for w in self.workers if w.alive]
        if not live:
            return None
        worker = min(live, key=lambda w: (len(w.legs), w.index))
        self._room_worker[room] = worker
        self._room_legs[room] = set()
        worker.rooms.add(room)
        return worker

    def _join(self, worker: _Worker, leg_id: str, room: str) -> None:
        worker.legs.add(leg_id)
        self._leg_worker[leg_id] = worker
        self._leg_room[leg_id] = room
        self._room_legs.setdefault(room, set()).add(leg_id)

    def _leave(self, worker: _Worker, leg_id: str) -> None:
        worker.legs.discard(leg_id)
        self._leg_worker.pop(leg_id, None)
        room = self._leg_room.pop(leg_id, None)
        if room is None:
            return
        legs = self._room_legs.get(room)
        if legs is not None:
            legs.discard(leg_id)
            if not legs:
                del self._room_legs[room]
                self._room_worker.pop(room, None)
                worker.rooms.discard(room)
                self._prompts.pop(f"room:{room}", None)

    @property
    def worker_legs(self) -> int:
        """Legs whose media runs in a worker now."""
        return len(self._leg_worker)

    def loads(self) -> list[int]:
        """Legs per live worker."""
        return [len(w.legs) for w in self.workers if w.alive]

    def worker_of(self, leg_id: str) -> int | None:
        """The pid of the worker running the leg's media (None: the main process)."""
        worker = self._leg_worker.get(leg_id)
        return worker.pid if worker is not None else None

    def room_worker(self, room: str) -> int | None:
        """The pid of the worker owning ``room`` (None: the main process or unknown)."""
        worker = self._room_worker.get(room)
        return worker.pid if worker is not None else None

    # -- moves --------------------------------------------------------------------------------

    def move_leg(self, leg_id: str, room: str) -> None:
        if leg_id in self._orphans:
            return
        source = self._leg_worker.get(leg_id)
        target = self._destination(leg_id, room)
        finished = self.prompt_count(leg_id)
        if source is None and target is None:
            self.runtime.engine.move_leg(leg_id, room)
            return
        if source is not None and source is target:
            if self._leg_room.get(leg_id) != room:
                self._leave(source, leg_id)
                self._join(source, leg_id, room)
                self._send(source, MoveLeg(leg_id=leg_id, room=room))
            return
        self.moves += 1
        if source is None:
            state, rtp, rtcp = self.runtime.detach_leg(leg_id)
            fds = [rtp.detach(), rtcp.detach()]
        else:
            exported = self._export(source, leg_id)
            if exported is None:
                self._lose(leg_id, source)
                if target is not None and not self._room_legs.get(room):
                    self._drop_room(target, room)
                return
            state, fds = exported
        self._restart_prompts(leg_id, finished)
        state = dataclasses.replace(state, room=room)
        if target is None:
            rtp_sock, rtcp_sock = (socket.socket(fileno=fd) for fd in fds)
            self.runtime.adopt_leg(state, rtp_sock, rtcp_sock)
        else:
            self._join(target, leg_id, room)
            self._send(target, ImportLeg(state=state), fds)

    def _drop_room(self, worker: _Worker, room: str) -> None:
        self._room_worker.pop(room, None)
        self._room_legs.pop(room, None)
        worker.rooms.discard(room)

    def _lose(self, leg_id: str, worker: _Worker) -> None:
        """The worker did not give the leg back: hang it up."""
        self._leave(worker, leg_id)
        self._orphans.add(leg_id)
        self._send(worker, RemoveLeg(leg_id=leg_id))  # should it still have it
        log.error("leg %s: media worker %d did not give it back; hanging up", leg_id,
                  worker.index)
        loop = self._loop
        assert loop is not None
        loop.call_soon(self.on_lost, [leg_id])

    def _restart_prompts(self, leg_id: str, finished: int) -> None:
        """The leg's player starts afresh in the other engine: what was queued counts as
        finished, and the waiting channel is told so."""
        counts = self._prompts.setdefault(leg_id, _Prompts())
        total = max(counts.enqueued, finished, counts.base)
        counts.base = counts.enqueued = counts.finished = total
        # Whether the controller has heard of it, not whether the player had finished: the
        # main engine reports a stop_prompts at its next tick, and a move right after the stop
        # takes the leg (and that report) away before the tick.
        if counts.told < total:
            counts.told = total
            loop = self._loop
            assert loop is not None
            finish: list[MediaEvent] = [PromptFinished(target=leg_id, count=total)]
            loop.call_soon(self._dispatch, finish)

    def _export(self, worker: _Worker, leg_id: str) -> tuple[LegTransfer, list[int]] | None:
        """Ask a worker for a leg back and wait for the answer (other messages read meanwhile
        are booked now and handed on soon after)."""
        request = next(self._requests)
        self._send(worker, ExportLeg(leg_id=leg_id, request=request))
        deadline = time.monotonic() + EXPORT_TIMEOUT
        channel = worker.channel
        later: list[MediaEvent] = []
        loop = self._loop
        assert loop is not None
        # poll, not select: the channel's descriptor may lie above FD_SETSIZE (1024) in a
        # main process holding many sockets
        poller = select.poll()
        poller.register(channel.sock, select.POLLIN)
        try:
            while worker.alive:
                left = deadline - time.monotonic()
                if left <= 0:
                    log.error("media worker %d: no answer to an export in %.1f s",
                              worker.index, EXPORT_TIMEOUT)
                    return None
                poller.modify(channel.sock,
                              select.POLLIN | (select.POLLOUT if channel.pending else 0))
                ready = poller.poll(math.ceil(left * 1000))
                mask = ready[0][1] if ready else 0
                try:
                    if mask & select.POLLOUT:
                        channel.flush()
                    if not mask & (select.POLLIN | select.POLLHUP | select.POLLERR):
                        continue
                    messages = channel.receive()
                except (EOFError, OSError):
                    loop.call_soon(self._died, worker)
                    return None
                answered = False
                found: tuple[LegTransfer, list[int]] | None = None
                for message, fds in messages:
                    if isinstance(message, Exported) and message.request == request:
                        answered = True
                        if message.state is not None and len(fds) == 2:
                            found = (message.state, fds)
                            self._leave(worker, leg_id)
                            continue
                        for fd in fds:  # no such leg there, or not its two sockets
                            os.close(fd)
                        continue
                    for fd in fds:
                        os.close(fd)
                    later.extend(self._take(worker, message))  # the rest of the batch too
                if answered:
                    return found
            return None
        finally:
            self._want_write(worker)
            if later:
                loop.call_soon(self._dispatch, later)

    # -- MediaControl -------------------------------------------------------------------------

    def __contains__(self, leg_id: object) -> bool:
        return leg_id in self._leg_worker or leg_id in self.runtime.engine

    def add_info_digit(self, leg_id: str, digit: str, duration_ms: int | None,
                       now: float) -> None:
        worker = self._leg_worker.get(leg_id)
        if worker is None:
            self.runtime.engine.add_info_digit(leg_id, digit, duration_ms, now)
        else:
            self._send(worker, AddInfoDigit(leg_id=leg_id, digit=digit, duration_ms=duration_ms))

    def update_leg(self, leg_id: str, media: LegMedia) -> None:
        worker = self._leg_worker.get(leg_id)
        if worker is None:
            self.runtime.engine.update_leg(leg_id, media)
        else:
            self._send(worker, UpdateLeg(leg_id=leg_id, media=media))

    def remove_leg(self, leg_id: str) -> None:
        self._prompts.pop(leg_id, None)
        worker = self._leg_worker.get(leg_id)
        if worker is not None:
            self._leave(worker, leg_id)
            self._send(worker, RemoveLeg(leg_id=leg_id))
            self.runtime.release_port(leg_id)
        elif leg_id in self._orphans:
            self._orphans.discard(leg_id)
            self.runtime.release_port(leg_id)
        else:
            self.runtime.remove_leg(leg_id)

    def set_muted(self, leg_id: str, muted: bool) -> None:
        worker = self._leg_worker.get(leg_id)
        if worker is None:
            self.runtime.engine.set_muted(leg_id, muted)
        else:
            self._send(worker, SetMuted(leg_id=leg_id, value=muted))

    def set_deaf(self, leg_id: str, deaf: bool) -> None:
        worker = self._leg_worker.get(leg_id)
        if worker is None:
            self.runtime.engine.set_deaf(leg_id, deaf)
        else:
            self._send(worker, SetDeaf(leg_id=leg_id, value=deaf))

    def set_gain(self, leg_id: str, gain: float) -> None:
        worker = self._leg_worker.get(leg_id)
        if worker is None:
            self.runtime.engine.set_gain(leg_id, gain)
        else:
            self._send(worker, SetGain(leg_id=leg_id, value=gain))

    def play(self, leg_id: str, clips: Iterable[Clip], *, loop: bool = False) -> int:
        worker = self._leg_worker.get(leg_id)
        counts = self._prompts.setdefault(leg_id, _Prompts())
        if worker is None:
            counts.enqueued = counts.base + self.runtime.engine.play(leg_id, clips, loop=loop)
            return counts.enqueued
        batch = tuple(clips)
        counts.enqueued += len(batch)
        self._send(worker, Play(leg_id=leg_id, clips=batch, loop=loop))
        return counts.enqueued

    def play_room(self, room: str, clips: Iterable[Clip], *, loop: bool = False) -> int:
        worker = self._room_worker.get(room)
        if worker is None:
            return self.runtime.engine.play_room(room, clips, loop=loop)
        counts = self._prompts.setdefault(f"room:{room}", _Prompts())
        batch = tuple(clips)
        counts.enqueued += len(batch)
        self._send(worker, PlayRoom(room=room, clips=batch, loop=loop))
        return counts.enqueued

    def stop_prompts(self, leg_id: str) -> None:
        worker = self._leg_worker.get(leg_id)
        if worker is None:
            self.runtime.engine.stop_prompts(leg_id)
        else:
            self._send(worker, StopPrompts(leg_id=leg_id))

    def prompt_count(self, target: str) -> int:
        counts = self._prompts.get(target)
        if target.startswith("room:"):
            if target[5:] in self._room_worker:
                return counts.finished if counts is not None else 0
            return self.runtime.engine.prompt_count(target)
        if target in self._leg_worker or target in self._orphans:
            return counts.finished if counts is not None else 0
        base = counts.base if counts is not None else 0
        return base + self.runtime.engine.prompt_count(target)

    def room_legs(self, room: str) -> set[str]:
        if room in self._room_worker:
            return set(self._room_legs.get(room, ()))
        return self.runtime.engine.room_legs(room)

    # -- statistics ---------------------------------------------------------------------------

    async def stats(self, *, mark: bool = False, timeout: float = 5.0) -> list[WorkerStats]:
        """Every live worker's figures (since the last ``mark``)."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[WorkerStats]] = []
        for worker in [w for w in self.workers if w.alive]:
            request = next(self._requests)
            future: asyncio.Future[WorkerStats] = loop.create_future()
            self._stats[request] = (worker, future)
            futures.append(future)
            self._send(worker, StatsRequest(request=request, mark=mark))
        done = await asyncio.wait_for(
            asyncio.gather(*futures, return_exceptions=True), timeout)
        return [s for s in done if isinstance(s, WorkerStats)]
