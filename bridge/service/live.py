"""The live conference service: what the keypad, the HTTP API, the CLI and the scheduler see
of the conferences in use, and the one entry point through which they act on them.

The runtime's conference controller (:class:`bridge.runtime.controller.ConferenceController`)
implements :class:`ConferenceService`; the web layer consumes it (see
``/work/wt/notes/SERVICE_CONTRACT.md``).

* :meth:`ConferenceService.live` / :meth:`ConferenceService.conference`: snapshots
  (:class:`ConferenceView`, frozen) of the rooms in use.
* :meth:`ConferenceService.execute`: a command of ``bridge.conference.commands`` to a room in
  use; returns the domain events it caused. A command the actor may not issue comes back as a
  ``CommandRefused`` event, the same for every actor; a room that is not in use raises
  :class:`NoLiveConference`. ``command.by`` is a leg id or a system actor (``"web"``,
  ``"cli"``, ``"scheduler"``: moderator rights).
* :meth:`ConferenceService.subscribe`: every domain event of every room, in the order the
  effects were applied, as :class:`RoomEvent` (``seq`` strictly increasing per process). Each
  subscriber has a bounded queue: one that falls behind by more than its bound is dropped
  (its iteration ends, ``dropped`` is True), never the bridge.

No I/O here: the hub only hands events from the controller to the subscribers' queues.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bridge.conference.commands import Command
from bridge.conference.enums import Language, Role
from bridge.conference.events import Event, TalkingStarted, TalkingStopped
from bridge.store.base import Direction

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "ConferenceService",
    "ConferenceView",
    "EventHub",
    "EventSubscription",
    "Health",
    "LegState",
    "NoLiveConference",
    "ParticipantView",
    "RoomEvent",
    "Subscription",
    "TalkingStarted",
    "TalkingStopped",
]

DEFAULT_QUEUE_SIZE = 1000


class LegState(StrEnum):
    """Where a participant's call is: still in the IVR, held for the moderator, or in."""

    IVR = "ivr"
    WAITING = "waiting"
    IN_CONFERENCE = "in_conference"


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantView:
    id: str  # the leg id (what commands take as ``leg``)
    caller: str  # From display name or user
    number_dialed: str
    role: Role
    language: Language
    direction: Direction
    joined_at: float  # UTC epoch seconds
    muted: bool
    deaf: bool
    talking: bool
    state: LegState


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceView:
    room_id: int
    account_id: int
    room_name: str
    run_id: int | None
    opened_at: float  # UTC epoch seconds
    locked: bool
    participants: tuple[ParticipantView, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RoomEvent:
    seq: int  # strictly increasing per process, in the order effects were applied
    at: float  # UTC epoch seconds
    room_id: int
    account_id: int
    run_id: int | None
    event: Event  # a domain event (bridge.conference.events)


class NoLiveConference(LookupError):  # noqa: N818 (the name of the contract)
    """The room has no conference in use."""


class EventSubscription(Protocol):
    """An async iterator of :class:`RoomEvent`; ``close`` ends it."""

    def __aiter__(self) -> AsyncIterator[RoomEvent]: ...

    async def __anext__(self) -> RoomEvent: ...

    def close(self) -> None: ...


class ConferenceService(Protocol):
    def live(self, account_id: int | None = None) -> list[ConferenceView]:
        """The conferences in use (of one account; ``None``: all, for an admin)."""
        ...

    def conference(self, room_id: int) -> ConferenceView | None: ...

    def execute(self, room_id: int, command: Command) -> list[Event]:
        """Apply ``command``; raises :class:`NoLiveConference`; refusals are events."""
        ...

    def subscribe(self) -> EventSubscription: ...


class Health(Protocol):
    """What ``/healthz`` checks, passed to the web hook by the composition root."""

    def media_tick_age(self) -> float:
        """Seconds since the media clock of the main process last ticked (0 right after)."""
        ...

    def loop_lag(self) -> float:
        """Seconds the event loop was late at its last probe (probed every 0.5 s)."""
        ...


class Subscription:
    """One subscriber's bounded queue (see :meth:`EventHub.subscribe`)."""

    def __init__(self, limit: int, on_close: Callable[[Subscription], None]) -> None:
        self._queue: deque[RoomEvent] = deque()
        self._limit = limit
        self._on_close = on_close
        self._wake: asyncio.Future[None] | None = None
        self.closed = False
        self.dropped = False  # fell more than ``limit`` events behind

    def push(self, event: RoomEvent) -> None:
        if self.closed:
            return
        if len(self._queue) >= self._limit:
            self.dropped = True
            self.close()
            return
        self._queue.append(event)
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._on_close(self)
        self._poke()

    def __aiter__(self) -> AsyncIterator[RoomEvent]:
        return self

    async def __anext__(self) -> RoomEvent:
        while True:
            if self.dropped or (self.closed and not self._queue):
                raise StopAsyncIteration
            if self._queue:
                return self._queue.popleft()
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None

    def pending(self) -> int:
        return len(self._queue)


class EventHub:
    """Numbers room events and fans them out to the subscriptions."""

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._subscriptions: list[Subscription] = []
        self._queue_size = queue_size
        self._seq = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(self) -> Subscription:
        sub = Subscription(self._queue_size, self._remove)
        self._subscriptions.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subscriptions:
            self._subscriptions.remove(sub)

    def publish(self, *, at: float, room_id: int, account_id: int, run_id: int | None,
                event: Event) -> RoomEvent:
        self._seq += 1
        room_event = RoomEvent(seq=self._seq, at=at, room_id=room_id, account_id=account_id,
                               run_id=run_id, event=event)
        for sub in list(self._subscriptions):
            sub.push(room_event)
        return room_event
