"""Dial-in conferences: the ``CallController`` that runs the IVR and the rooms in use.

:class:`ConferenceController` plugs into :class:`~bridge.runtime.app.BridgeApp` (through
the ``CallHost`` protocol of :mod:`bridge.runtime.calls`) and implements the live conference
service (:class:`bridge.service.live.ConferenceService`): the keypad, the HTTP API and the CLI
act through the same :meth:`ConferenceController.execute`; every domain event is published to
the service's subscribers (``TalkingStarted``/``TalkingStopped`` from the media's VAD).

* ``offered``: the Request-URI is normalised to E.164 (``numbers.normalize_request_user``,
  with ``ControllerConfig.default_country`` for national spellings) and looked up in the
  store's access numbers. Unknown (or not a number at all): rejection ``unknown_number`` is
  recorded and the INVITE is answered 404. Otherwise the call is answered.
* ``answered``: the leg (alone in its room ``leg:<call>``) runs the dial-in script
  ``bridge.ivr.flows.dial_in`` over a :class:`LegChannel`, in the access number's language.
* Joining (``ConferenceAccess.join``): one domain ``Conference`` per room in use (several
  rooms in parallel), opened by the first caller and dropped when the last leg leaves (an
  ended conference too, so the room can be dialled into again at once). Each opening gets a
  media room ``conf:<room id>:<n>``. A caller admitted to the conference: the join tone
  plays privately to every leg already in the media room (never to the joiner), the leg
  moves into the media room, and its call record is opened (committed before the script
  goes on). A caller held for the moderator stays in its own room with hold music and its
  record open; the moderator's arrival (``WaitingEnded``) moves it in.
* Leaving: a hangup leaves the domain with ``hangup``; the leave tone plays to the room
  (``play_room``, the leaver is gone already); the call record is closed with the reason.
* In the conference every key goes to the leg's ``Keypad`` (``*0`` help ... ``*7`` end);
  keys never reach the others (the engine keeps them out of the mix). Before the leg is in
  the media room keys go to the IVR.

What the bridge does about each domain event (prompts, tones, media moves, records, runs,
hangups) is decided by the pure policy :func:`bridge.conference.policy.decide` (its docstring
has the table); this controller only executes the effects, in order.

Clocks: the conference domain and the store take UTC epoch seconds (``time.time()``), the
keypad and the channels the loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import itertools
import logging
import time
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.conference import events as ev
from bridge.conference import policy
from bridge.conference.commands import Command
from bridge.conference.enums import Admission, Language, LeaveReason, Role
from bridge.conference.keypad import Keypad, KeypadTimers, UnknownSequence
from bridge.conference.model import Conference, Room
from bridge.conference.model import Leg as ConferenceLeg
from bridge.conference.numbers import NumberError, normalize_request_user
from bridge.conference.pins import DEFAULT_PIN_POLICY, PinPolicy, caller_source, failures_exhausted
from bridge.ivr.flows import (
    Collected,
    CollectEnd,
    CollectSpec,
    IvrTimers,
    dial_in,
)
from bridge.media.engine import LegDigitReceived, MediaEvent, PromptFinished, TalkingChanged
from bridge.media.prompts import Clip, PromptError, PromptLibrary
from bridge.media.tones import join_tone, leave_tone
from bridge.runtime.calls import CallHost
from bridge.runtime.calls import Leg as AppLeg
from bridge.runtime.prompt_files import load_clip, load_prompts
from bridge.service.live import (
    ConferenceView,
    EventHub,
    LegState,
    NoLiveConference,
    ParticipantView,
    Subscription,
)
from bridge.sip.events import CallOffered
from bridge.sip.uri import SipUri
from bridge.store.base import AccessNumber, Direction, RejectionReason, RunEnd, Store

if TYPE_CHECKING:
    from bridge.runtime.workers import MediaControl

__all__ = ["ConferenceController", "ControllerConfig", "LegChannel"]

log = logging.getLogger("bridge.conference")

SAMPLE_RATE = 8000
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerConfig:
    """Tuning of the dial-in service.

    ``node_id`` names this process in the call records (crash recovery closes its open
    records at the next start). ``trusted_networks`` are trunks whose From identifies the
    caller (PIN failures are then counted per caller number, see ``pins.caller_source``).
    ``prompt_grace`` is added to a goodbye prompt's length before the BYE goes out anyway.
    """

    node_id: str
    ivr: IvrTimers = field(default_factory=IvrTimers)
    keypad: KeypadTimers = field(default_factory=KeypadTimers)
    pin_policy: PinPolicy = DEFAULT_PIN_POLICY
    default_country: str | None = None
    trusted_networks: tuple[str, ...] = ()
    prompt_grace: float = 5.0
    offer_ttl: float = 60.0  # forget an offered call that was never answered after this
    # Every answered call is in a conference (joined, or held for its moderator) or hung up
    # within this many seconds of the answer, whatever the IVR waits for (issue 14: calls
    # that neither joined nor failed). Well above the longest legitimate dial-in: prompts,
    # the language menu, three PIN tries at the IVR's timeouts.
    ivr_time_limit: float = 240.0
    ivr_calls_per_source: int = 4  # calls of one source in the IVR at once, all nodes (0: off)


def _caller_name(caller: str) -> str:
    """The user part of a From URI (``sip:alice@host`` -> ``alice``), else the text as is."""
    try:
        user = SipUri.parse(caller).user
    except ValueError:
        return caller
    return user or caller


def _seconds(clips: Sequence[Clip]) -> float:
    return sum(int(c.shape[0]) for c in clips) / SAMPLE_RATE


class LegChannel:
    """``flows.Channel`` for one leg: prompts through the media (engine or workers), keys
    from its ``LegDigitReceived`` events, completion from its ``PromptFinished`` events."""

    def __init__(self, app: CallHost, call: str, *, grace: float = 5.0) -> None:
        self._app = app
        self._call = call
        self._grace = grace
        self._keys: deque[str] = deque()
        self._wake: asyncio.Future[None] | None = None

    @property
    def _engine(self) -> MediaControl:
        return self._app.media_control

    # -- fed by the controller
    def key_pressed(self, key: str) -> None:
        self._keys.append(key)
        self._poke()

    def prompt_finished(self) -> None:
        self._poke()

    def _poke(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _wait(self, timeout: float | None) -> bool:
        """Sleep until a key or a prompt completion arrives; False on timeout."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(self._wake, timeout)
        except TimeoutError:
            return False
        finally:
            self._wake = None
        return True

    # -- Channel
    async def play(self, clips: Sequence[Clip], *, barge_in: bool = True) -> bool:
        if barge_in and self._keys:
            return False
        engine = self._engine
        if self._call not in engine:
            return True
        ticket = engine.play(self._call, clips)
        loop = asyncio.get_running_loop()
        # A prompt's end is an event from the media; should it never come (a media worker
        # lost, the leg moved meanwhile), the script goes on after the clips' length + grace.
        deadline = loop.time() + _seconds(clips) + self._grace
        while engine.prompt_count(self._call) < ticket:
            if barge_in and self._keys:
                engine.stop_prompts(self._call)
                return False
            left = deadline - loop.time()
            if left <= 0 or not await self._wait(left):
                log.warning("call %s: no end of prompt from the media after %.1f s; going on",
                            self._call, _seconds(clips) + self._grace)
                return True
        return True

    async def collect(self, spec: CollectSpec) -> Collected:
        loop = asyncio.get_running_loop()
        digits = ""
        deadline = loop.time() + spec.first_timeout
        while True:
            if self._keys:
                key = self._keys.popleft()
                if key == spec.terminator:
                    return Collected(digits=digits, end=CollectEnd.TERMINATOR)
                digits += key
                if len(digits) >= spec.max_digits:
                    return Collected(digits=digits, end=CollectEnd.MAX_DIGITS)
                deadline = loop.time() + spec.inter_timeout
                continue
            left = deadline - loop.time()
            if left <= 0 or not await self._wait(left):
                return Collected(digits=digits, end=CollectEnd.TIMEOUT)

    def hold(self, clip: Clip) -> None:
        if self._call in self._engine:
            self._engine.play(self._call, [clip], loop=True)

    def stop_prompts(self) -> None:
        self._engine.stop_prompts(self._call)
        self._keys.clear()

    def hang_up(self) -> None:
        if self._call in self._app.legs:
            self._app.hangup(self._call)


@dataclass(eq=False, slots=True)
class _Active:
    """A room in use: the domain conference and its media room."""

    conference: Conference
    media_room: str
    opened_at: float = 0.0
    run: asyncio.Task[int | None] | None = None  # store.open_run, once the first leg joined
    run_id: int | None = None  # the run's id once it is open
    peak: int = 0
    talking: set[str] = field(default_factory=set)

    @property
    def room(self) -> Room:
        return self.conference.room


@dataclass(eq=False, slots=True)
class _Call:
    leg: AppLeg
    number: AccessNumber
    source: str
    channel: LegChannel
    language: Language
    task: asyncio.Task[None] | None = None
    room_id: int | None = None  # the conference the leg is in (domain)
    in_room: bool = False  # its media is in the conference's media room
    keypad: Keypad | None = None
    record: asyncio.Task[int] | None = None
    released: asyncio.Future[bool] | None = None
    watchdog: asyncio.TimerHandle | None = None
    answered_at: float | None = None  # UTC epoch seconds (the IVR starts)
    direction: Direction = Direction.DIAL_IN


class _CallAccess:
    """``flows.ConferenceAccess`` bound to one call."""

    def __init__(self, controller: ConferenceController, call: _Call) -> None:
        self._c = controller
        self._call = call
        self._attempt: int | None = None  # the PIN try reserved now

    async def failures_exhausted(self) -> bool:
        return await failures_exhausted(self._c.store, self._call.source, time.time(),
                                        self._c.config.pin_policy)

    async def reserve_try(self) -> bool:
        policy = self._c.config.pin_policy
        now = time.time()
        self._attempt = await self._c.store.reserve_pin_attempt(
            source=self._call.source, since=now - policy.failure_window,
            limit=policy.max_failures, now=now, node_id=self._c.config.node_id)
        return self._attempt is not None

    async def release_try(self) -> None:
        attempt, self._attempt = self._attempt, None
        if attempt is not None:  # shielded like reject: a hang-up must not keep it reserved
            await asyncio.shield(self._c._spawn(self._c.store.release_pin_attempt(attempt)))

    async def find_pin(self, pin: str) -> tuple[Room, Role] | None:
        found = await self._c.store.find_room_by_pin(pin)
        bound = self._call.number.room_id
        if found is not None and bound is not None and found[0].id != bound:
            return None  # a number bound to a room takes only that room's PINs
        return found

    async def reject(self, reason: RejectionReason, room: Room | None) -> None:
        # Its own task, shielded: a caller hanging up right after a wrong PIN cancels the IVR,
        # and must not cancel (roll back) the record of the failure with it.
        await asyncio.shield(self._c._spawn(self._c.record_rejection(self._call, reason, room)))

    def admission(self, room: Room, role: Role) -> Admission:
        active = self._c.active.get(room.id)
        conference = active.conference if active is not None else Conference.open(room)
        return conference.admit(role, time.time())

    def others(self, room: Room) -> int:
        active = self._c.active.get(room.id)
        return active.conference.count if active is not None else 0

    def intro(self, room: Room) -> Clip | None:
        return self._c.intro(room)

    async def join(self, room: Room, role: Role, language: Language) -> Admission:
        admission = self._c.join(self._call, room, role, language)
        if self._call.record is not None:
            # committed before the script goes on; a failure is logged by the task itself
            await asyncio.wait([self._call.record])
        return admission

    async def released(self) -> bool:
        if self._call.released is None:
            return False
        return await self._call.released


class ConferenceController:
    """The dial-in service (see the module docstring for every prompt and decision)."""

    def __init__(self, store: Store, config: ControllerConfig,
                 prompts: PromptLibrary | None = None) -> None:
        self.store = store
        self.config = config
        self.prompts = prompts if prompts is not None else load_prompts()
        self.active: dict[int, _Active] = {}
        self.calls: dict[str, _Call] = {}
        self.ivr_overdue = 0  # calls hung up by the IVR time limit
        self._offers: dict[str, tuple[AccessNumber, str, float]] = {}
        self._app: CallHost | None = None
        self.hub = EventHub()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._room_waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        self._intros: dict[str, Clip] = {}
        self._generation = itertools.count(1)
        self._trusted = [ipaddress.ip_network(n, strict=False)
                         for n in config.trusted_networks]

    def attach(self, app: CallHost) -> None:
        """The bridge process this controller serves (also set by its first call)."""
        self._app = app

    # -- CallController ------------------------------------------------------------------------

    async def offered(self, app: CallHost, offered: CallOffered) -> int | None:
        self._app = app
        now = time.monotonic()
        for call, (_, _, at) in list(self._offers.items()):
            if now - at > self.config.offer_ttl:
                del self._offers[call]
        source = self._source(offered.from_uri, offered.source)
        try:
            dialed = normalize_request_user(offered.request_uri, self.config.default_country)
        except NumberError:
            dialed = None
        number = await self.store.lookup_access_number(dialed) if dialed else None
        if number is None:
            log.info("call %s to %s: unknown access number, 404", offered.call,
                     offered.request_uri)
            await self.store.record_rejection(
                at=time.time(), number_dialed=dialed or (offered.user or ""),
                caller=offered.from_uri, source=source,
                reason=RejectionReason.UNKNOWN_NUMBER, node_id=self.config.node_id)
            return 404
        self._offers[offered.call] = (number, source, now)
        return None

    def answered(self, app: CallHost, leg: AppLeg) -> None:
        self._app = app
        if leg.outbound:
            return
        offer = self._offers.pop(leg.call, None)
        if offer is None:
            app.hangup(leg.call)
            return
        number, source, _ = offer
        call = _Call(leg=leg, number=number, source=source,
                     channel=LegChannel(app, leg.call, grace=self.config.prompt_grace),
                     language=number.language, answered_at=time.time())
        self.calls[leg.call] = call
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._run(call))
        call.task = task
        call.watchdog = loop.call_later(self.config.ivr_time_limit, self._ivr_overdue, call)
        task.add_done_callback(functools.partial(self._flow_done, call))

    def ended(self, app: CallHost, leg: AppLeg, reason: str) -> None:
        call = self.calls.get(leg.call)
        if call is None:
            return
        if call.watchdog is not None:
            call.watchdog.cancel()
        if call.task is not None:
            call.task.cancel()
        if call.released is not None and not call.released.done():
            call.released.cancel()
        if call.room_id is not None:
            active = self.active.get(call.room_id)
            if active is not None:
                # The caller hung up (BYE, CANCEL); anything else ended the call on our side
                # without a moderator's command (shutdown, session timer, lost ACK).
                left = (LeaveReason.HANGUP if reason in ("remote_bye", "cancelled")
                        else LeaveReason.INTERRUPTED)
                self._apply(active, active.conference.leave(leg.call, left, time.time()))
        del self.calls[leg.call]

    def media_event(self, app: CallHost, event: MediaEvent) -> None:
        match event:
            case TalkingChanged(leg=leg_id, talking=talking):
                self._talking(leg_id, talking)
            case LegDigitReceived(leg=leg_id, digit=digit):
                call = self.calls.get(leg_id)
                if call is None:
                    return
                if call.in_room and call.keypad is not None:
                    self._keypad(call, call.keypad, digit)
                else:
                    call.channel.key_pressed(digit)
            case PromptFinished(target=target, count=count):
                if target.startswith("room:"):
                    self._room_prompt_finished(target[5:], count)
                else:
                    call = self.calls.get(target)
                    if call is not None:
                        call.channel.prompt_finished()
            case _:
                pass

    # -- the IVR -------------------------------------------------------------------------------

    async def _run(self, call: _Call) -> None:
        limit = self.config.ivr_calls_per_source
        if limit and not await self.store.enter_ivr(
                call_id=call.leg.call, source=call.source, limit=limit, now=time.time(),
                node_id=self.config.node_id):
            log.info("call %s from %s: %d calls of %s in the IVR already; refused",
                     call.leg.call, call.leg.caller, limit, call.source)
            await asyncio.shield(self._spawn(self.record_rejection(
                call, RejectionReason.TOO_MANY_FAILURES, None)))
            await call.channel.play(
                self.prompts.sequence(call.language.value, "too_many_attempts_goodbye"))
            call.channel.hang_up()
            return
        try:
            outcome = await dial_in(call.channel, _CallAccess(self, call), self.prompts,
                                    language=call.number.language, timers=self.config.ivr,
                                    policy=self.config.pin_policy)
        finally:
            if limit:
                await asyncio.shield(self._spawn(self.store.leave_ivr(call.leg.call)))
        log.info("call %s from %s: IVR %s", call.leg.call, call.leg.caller, outcome.value)

    def _ivr_overdue(self, call: _Call) -> None:
        """The IVR time limit: a call not in a conference by now is hung up (failed)."""
        call.watchdog = None
        if self.calls.get(call.leg.call) is not call or call.room_id is not None:
            return
        self.ivr_overdue += 1
        log.warning("call %s from %s: not joined within the IVR time limit (%.0f s); "
                    "hanging up", call.leg.call, call.leg.caller, self.config.ivr_time_limit)
        if call.task is not None:
            call.task.cancel()
        call.channel.hang_up()

    def _flow_done(self, call: _Call, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("IVR of call %s failed; hanging up", call.leg.call, exc_info=exc)
            call.channel.hang_up()

    async def record_rejection(self, call: _Call, reason: RejectionReason,
                               room: Room | None) -> None:
        await self.store.record_rejection(
            at=time.time(), number_dialed=call.number.number, caller=call.leg.caller,
            source=call.source, reason=reason, node_id=self.config.node_id,
            room_id=None if room is None else room.id)

    def intro(self, room: Room) -> Clip | None:
        if not room.intro_path:
            return None
        clip = self._intros.get(room.intro_path)
        if clip is None:
            try:
                clip = load_clip(Path(room.intro_path))
            except PromptError as exc:
                log.warning("room %s: intro not played: %s", room.id, exc)
                return None
            self._intros[room.intro_path] = clip
        return clip

    def _source(self, from_uri: str, addr: tuple[str, int]) -> str:
        host = addr[0]
        trusted = False
        with contextlib.suppress(ValueError):
            trusted = any(ipaddress.ip_address(host) in n for n in self._trusted)
        caller = ""
        if trusted:
            try:
                caller = normalize_request_user(from_uri, self.config.default_country)
            except NumberError:
                caller = ""
        return caller_source(caller or None, host, trusted)

    # -- conferences ---------------------------------------------------------------------------

    @property
    def engine(self) -> MediaControl:
        """The media of the legs: this process's engine, or the media workers
        (``[media] workers``; see :mod:`bridge.runtime.workers`)."""
        assert self._app is not None
        return self._app.media_control

    def join(self, call: _Call, room: Room, role: Role, language: Language) -> Admission:
        """Domain join plus its effects; opens the conference if the room is not in use."""
        now = time.time()
        active = self.active.get(room.id)
        if active is None:
            active = _Active(conference=Conference.open(room),
                             media_room=f"conf:{room.id}:{next(self._generation)}",
                             opened_at=now)
        leg_id = call.leg.call
        admission = active.conference.admit(role, now)
        events = active.conference.join(
            ConferenceLeg(leg_id=leg_id, role=role, language=language, joined_at=now,
                          caller=call.leg.caller, dialed=call.number.number,
                          source=call.source), now)
        if not admission.enters:
            return admission
        self.active[room.id] = active
        call.room_id = room.id
        call.language = language
        call.keypad = Keypad(leg_id, self.config.keypad)
        if admission is Admission.WAIT_FOR_MODERATOR:
            call.released = asyncio.get_running_loop().create_future()
        self._apply(active, events)  # opens the record (policy.OpenRecord)
        return admission

    def _spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("conference task failed", exc_info=task.exception())

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait for pending store writes (call records) before the store is closed."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def _keypad(self, call: _Call, keypad: Keypad, digit: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            out = keypad.press(digit, loop.time())
        except ValueError:
            return  # not a DTMF key
        if out is None:
            return
        if isinstance(out, UnknownSequence):
            self._say(call.leg.call, "invalid_choice")
            return
        if call.room_id is not None:
            with contextlib.suppress(NoLiveConference):
                self.execute(call.room_id, out)

    # -- the live conference service (bridge.service.live) -----------------------------------

    def execute(self, room_id: int, command: Command) -> list[ev.Event]:
        """Apply a command (keypad, web, CLI, scheduler) to a room in use; returns its events.

        Raises :class:`NoLiveConference` when the room has no conference in use."""
        active = self.active.get(room_id)
        if active is None or active.conference.ended:
            raise NoLiveConference(room_id)
        events = active.conference.handle(command, time.time())
        self._apply(active, events)
        return events

    def live(self, account_id: int | None = None) -> list[ConferenceView]:
        return [self._view(a) for _, a in sorted(self.active.items())
                if account_id is None or a.room.account_id == account_id]

    def conference(self, room_id: int) -> ConferenceView | None:
        active = self.active.get(room_id)
        return None if active is None else self._view(active)

    def subscribe(self) -> Subscription:
        return self.hub.subscribe()

    def _view(self, active: _Active) -> ConferenceView:
        room = active.room
        return ConferenceView(
            room_id=room.id, account_id=room.account_id, room_name=room.name,
            run_id=active.run_id, opened_at=active.opened_at,
            locked=active.conference.locked,
            participants=tuple(self._participant(active, leg)
                               for leg in active.conference.legs.values()))

    def _participant(self, active: _Active, leg: ConferenceLeg) -> ParticipantView:
        call = self.calls.get(leg.leg_id)
        if leg.waiting:
            state = LegState.WAITING
        elif call is not None and call.in_room:
            state = LegState.IN_CONFERENCE
        else:
            state = LegState.IVR
        outbound = call is not None and call.leg.outbound
        return ParticipantView(
            id=leg.leg_id, caller=_caller_name(leg.caller), number_dialed=leg.dialed,
            role=leg.role, language=leg.language,
            direction=Direction.DIAL_OUT if outbound else Direction.DIAL_IN,
            joined_at=leg.joined_at, muted=leg.muted, deaf=leg.deaf,
            talking=leg.leg_id in active.talking, state=state)

    def _talking(self, leg_id: str, talking: bool) -> None:
        call = self.calls.get(leg_id)
        if call is None or call.room_id is None or not call.in_room:
            return
        active = self.active.get(call.room_id)
        if active is None or (leg_id in active.talking) == talking:
            return
        if talking:
            active.talking.add(leg_id)
            self._apply(active, [ev.TalkingStarted(leg=leg_id)])
        else:
            active.talking.discard(leg_id)
            self._apply(active, [ev.TalkingStopped(leg=leg_id)])

    # -- effects of domain events (bridge.conference.policy decides them) -------------------

    def _apply(self, active: _Active, events: list[ev.Event]) -> None:
        """Execute what the policy decides about ``events`` of ``active``'s conference."""
        if not events:
            return
        for effect in policy.decide(events, self._snapshot(active, events)):
            self._execute(active, effect)

    def _snapshot(self, active: _Active, events: list[ev.Event]) -> policy.Snapshot:
        ids = set(active.conference.legs)
        for event in events:
            leg = getattr(event, "leg", None)
            if isinstance(leg, str):
                ids.add(leg)
            by = getattr(event, "by", None)
            if isinstance(by, str):
                ids.add(by)
        legs: dict[str, policy.LegSnapshot] = {}
        for leg_id in ids:
            call = self.calls.get(leg_id)
            if call is not None and call.room_id == active.room.id:
                legs[leg_id] = policy.LegSnapshot(language=call.language, in_media=call.in_room)
        return policy.Snapshot(room_language=active.room.language, legs=legs,
                               run_open=active.run is not None, peak=active.peak)

    def _execute(self, active: _Active, effect: policy.Effect) -> None:
        engine = self.engine
        match effect:
            case policy.Publish(event=event):
                self.hub.publish(at=time.time(), room_id=active.room.id,
                                 account_id=active.room.account_id, run_id=active.run_id,
                                 event=event)
            case policy.PlayToLeg(leg=leg, prompt=prompt, language=language):
                if leg in self.calls and leg in engine:
                    engine.play(leg, self.prompts.sequence(language.value, *prompt))
            case policy.PlayTone(tone=tone, legs=legs):
                clip = join_tone() if tone is policy.Tone.JOIN else leave_tone()
                for leg in legs:
                    if leg in engine:
                        engine.play(leg, [clip])
            case policy.AnnounceToRoom(prompt=prompt, language=language, tone=tone):
                if tone is not None:
                    self._room_say(active, [join_tone() if tone is policy.Tone.JOIN
                                            else leave_tone()])
                else:
                    self._room_say(active, self.prompts.sequence(language.value, *prompt))
            case policy.SetMuted(leg=leg, muted=muted):
                if leg in engine:
                    engine.set_muted(leg, muted)
            case policy.SetDeaf(leg=leg, deaf=deaf):
                if leg in engine:
                    engine.set_deaf(leg, deaf)
            case policy.EnterConference(leg=leg, stop_hold=stop_hold):
                call = self.calls.get(leg)
                if call is not None and leg in engine:
                    if stop_hold:
                        call.channel.stop_prompts()
                    engine.move_leg(leg, active.media_room)
                    call.in_room = True
            case policy.MoveOut(leg=leg):
                call = self.calls.get(leg)
                if call is not None:
                    if leg in engine:
                        engine.stop_prompts(leg)
                        engine.move_leg(leg, call.leg.room)
                    call.in_room = False
            case policy.ReleaseWaiter(leg=leg, released=released):
                call = self.calls.get(leg)
                if call is not None and call.released is not None and not call.released.done():
                    call.released.set_result(released)
            case policy.DetachLeg(leg=leg):
                active.talking.discard(leg)
                call = self.calls.get(leg)
                if call is not None:
                    call.room_id = None
                    call.keypad = None
            case policy.CancelIvr(leg=leg):
                call = self.calls.get(leg)
                if call is not None and call.task is not None:
                    call.task.cancel()
            case policy.StopPrompts(leg=leg):
                if leg in engine:
                    engine.stop_prompts(leg)
            case policy.SayThenHangUp(leg=leg, prompt=prompt, language=language):
                call = self.calls.get(leg)
                if call is not None:
                    self._spawn(self._say_then_hang_up(
                        call, self.prompts.sequence(language.value, *prompt)))
            case policy.HangUp(leg=leg):
                call = self.calls.get(leg)
                if call is not None:
                    call.channel.hang_up()
            case policy.AnnounceThenHangUp(prompt=prompt, language=language, legs=legs):
                calls = [self.calls[leg] for leg in legs if leg in self.calls]
                self._spawn(self._room_say_then_hang_up(
                    active, self.prompts.sequence(language.value, *prompt), calls))
            case policy.OpenRecord(leg=leg, role=role, joined_at=joined_at,
                                   conference_at=conference_at):
                call = self.calls.get(leg)
                if call is not None:
                    call.record = self._spawn(self._open_record(
                        call, active, role, joined_at, conference_at))
            case policy.MarkInConference(leg=leg, at=at):
                call = self.calls.get(leg)
                if call is not None and call.record is not None:
                    self._spawn(self._mark_in_conference(call.record, at))
            case policy.CloseRecord(leg=leg, reason=reason, at=at, ended_by=ended_by):
                call = self.calls.get(leg)
                if call is not None and call.record is not None:
                    self._spawn(self._close_record(call.record, reason, at, ended_by))
                    call.record = None
            case policy.OpenRun(at=at):
                active.run = self._spawn(self._open_run(active, at))
            case policy.NoteRunPeak(participants=participants):
                active.peak = max(active.peak, participants)
                if active.run is not None:
                    self._spawn(self._note_peak(active.run, participants))
            case policy.EndRun(reason=reason, at=at):
                if active.run is not None:
                    self._spawn(self._end_run(active.run, reason, at))
            case policy.DropConference():
                if self.active.get(active.room.id) is active:
                    del self.active[active.room.id]
            case _:
                raise TypeError(f"unhandled effect {effect!r}")  # pragma: no cover

    # -- the store (records and runs), in tasks of their own ----------------------------------

    async def _open_run(self, active: _Active, at: float) -> int | None:
        run = await self.store.open_run(room_id=active.room.id, opened_at=at,
                                        node_id=self.config.node_id)
        active.run_id = run.id
        if active.peak:
            await self.store.note_run_peak(run.id, active.peak)
        return run.id

    async def _note_peak(self, run: asyncio.Task[int | None], participants: int) -> None:
        run_id = await asyncio.shield(run)
        if run_id is not None:
            await self.store.note_run_peak(run_id, participants)

    async def _end_run(self, run: asyncio.Task[int | None], reason: RunEnd, at: float) -> None:
        run_id = await asyncio.shield(run)
        if run_id is not None:
            await self.store.end_run(run_id, ended_at=at, reason=reason)

    async def _open_record(self, call: _Call, active: _Active, role: Role, joined_at: float,
                           conference_at: float | None) -> int:
        run_id = await asyncio.shield(active.run) if active.run is not None else None
        return await self.store.open_call_record(
            room_id=active.room.id, leg_id=call.leg.call, number_dialed=call.number.number,
            caller=call.leg.caller, source=call.source, role=role, language=call.language,
            joined_at=joined_at, node_id=self.config.node_id, run_id=run_id,
            direction=call.direction, answered_at=call.answered_at,
            conference_at=conference_at)

    async def _mark_in_conference(self, record: asyncio.Task[int], at: float) -> None:
        record_id = await asyncio.shield(record)
        await self.store.mark_in_conference(record_id, at)

    async def _close_record(self, record: asyncio.Task[int], reason: LeaveReason,
                            at: float, ended_by: str | None) -> None:
        record_id = await asyncio.shield(record)
        await self.store.close_call_record(record_id, left_at=at, reason=reason,
                                           ended_by=ended_by)

    # -- prompts -------------------------------------------------------------------------------

    def _say(self, leg_id: str, prompt_id: str) -> None:
        """A private prompt in the leg's language (nothing for system actors or gone legs)."""
        call = self.calls.get(leg_id)
        if call is not None and leg_id in self.engine:
            self.engine.play(leg_id, self.prompts.sequence(call.language.value, prompt_id))

    def _room_say(self, active: _Active, clips: Sequence[Clip]) -> int | None:
        if not self.engine.room_legs(active.media_room):
            return None
        return self.engine.play_room(active.media_room, clips)

    def _room_prompt_finished(self, room: str, count: int) -> None:
        waiters = self._room_waiters.get(room)
        if not waiters:
            return
        for ticket, fut in waiters:
            if count >= ticket and not fut.done():
                fut.set_result(None)

    async def _say_then_hang_up(self, call: _Call, clips: Sequence[Clip]) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.channel.play(clips, barge_in=False),
                                   _seconds(clips) + self.config.prompt_grace)
        call.channel.hang_up()

    async def _room_say_then_hang_up(self, active: _Active, clips: Sequence[Clip],
                                     calls: list[_Call]) -> None:
        ticket = self._room_say(active, clips)
        name = active.media_room
        if ticket is not None and self.engine.prompt_count(f"room:{name}") < ticket:
            fut = asyncio.get_running_loop().create_future()
            self._room_waiters.setdefault(name, []).append((ticket, fut))
            try:
                await asyncio.wait_for(fut, _seconds(clips) + self.config.prompt_grace)
            except TimeoutError:
                log.info("room %s: announcement not confirmed; hanging up anyway", name)
            finally:
                waiters = self._room_waiters.get(name, [])
                if (ticket, fut) in waiters:
                    waiters.remove((ticket, fut))
                if not waiters:
                    self._room_waiters.pop(name, None)
        for call in calls:
            call.channel.hang_up()
