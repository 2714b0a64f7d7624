"""The dial-in IVR as a plain async script over a :class:`Channel` (design notes §5-6).

The script talks to the caller only through ``Channel`` (play with barge-in, collect digits,
loop hold music, hang up) and to the conferences only through ``ConferenceAccess`` (PIN
lookup, failure counter, admission, join). It imports no asyncio and reads no clock: the
runtime (``bridge.runtime.controller``) implements both with futures fed by the media
engine's ``PromptFinished``/``LegDigitReceived`` events and loop timers; the unit tests use an
in-memory channel with a fake clock. A caller hanging up cancels the task running the script.

The script, in order (``L`` = the access number's language until the caller picks one):

0. Brute-force check first (step 3 below), so a source out of PIN tries hears no PIN prompt.
1. ``welcome`` in ``L`` (barge-in). A key pressed during it is the language menu's: ``1``
   German, ``2`` English, ``3`` French; any other key is the first digit of the PIN, in
   ``L`` (``#`` alone ends an empty try).
2. ``enter_pin`` in the language, at once after the welcome (about 2.5 s after the answer),
   and the first PIN try is collected: a caller who types the PIN from the invitation right
   away is entering it already. Only a caller who has pressed nothing
   ``IvrTimers.language_hint`` seconds after the prompt hears the language menu
   ``choose_language`` (shared, barge-in), with one key within ``IvrTimers.language`` read
   as during the welcome (a language, or the PIN's first digit); then ``enter_pin`` again
   (in the chosen language) unless the PIN is being typed. From here on everything plays in
   the chosen language.
3. Brute-force check (design notes §6): when the caller's source has ``PinPolicy.max_failures``
   wrong PINs within ``failure_window``: rejection ``too_many_failures``,
   ``too_many_attempts_goodbye``, hang up.
4. ``enter_pin``, then collect the PIN (the first try may come from steps 1-2): ``#`` ends
   it; so does the inter-digit timeout after at least one digit, or
   ``IvrTimers.pin_max_digits`` digits. A try with no digit at all (first-digit timeout,
   or a bare ``#``) is not looked up and records nothing.
   A wrong PIN (unknown, or another room's PIN on a number bound to a room) records the
   rejection ``wrong_pin`` under the caller's source. After a failed try 1 or 2:
   ``wrong_pin`` (barge-in) then step 4 again. After the third failed try:
   ``too_many_attempts_goodbye`` and hang up.
5. Admission (``Conference.admit``, the domain decides; moderators enter locked rooms):
   locked -> ``conference_locked``; full -> ``conference_full``; outside the room's schedule
   (not started / ended) -> ``goodbye``; each preceded by a rejection with the matching
   reason (``locked``/``full``/``not_started``/``ended``) and followed by hang up.
   Every rejection is recorded before its prompt plays, so it is stored by the time of the BYE.
6. The room's intro recording, if the room has one.
7. ``first_participant`` when nobody else is in the conference, else ``there_is_one`` or
   ``there_are`` N ``participants``.
8. Join. The join is checked again (the room may have filled or been locked meanwhile): a
   refusal then takes the branch of step 5. A participant held for the moderator hears
   ``waiting_for_moderator`` and looped hold music until the moderator arrives.

Every prompt is barge-in: digits typed while it plays stop it at once and are kept for the
next collection (type-ahead); a prompt is skipped when a digit is already waiting. Keys left
over when the announcements before the join were cut are forgotten at the join.
An access number bound to a room (``AccessNumber.room_id``) still asks for the PIN, and only
that room's PINs are accepted on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Protocol

from bridge.conference.enums import Admission, Language, Role
from bridge.conference.model import Room
from bridge.conference.pins import DEFAULT_PIN_POLICY, PinPolicy
from bridge.media.prompts import COUNT_PROMPTS, Clip, PromptLibrary
from bridge.media.tones import hold_music
from bridge.store.base import RejectionReason

__all__ = [
    "LANGUAGE_KEYS",
    "PROMPT_IDS",
    "Channel",
    "CollectEnd",
    "CollectSpec",
    "Collected",
    "ConferenceAccess",
    "IvrOutcome",
    "IvrTimers",
    "dial_in",
    "greet",
]

#: Language menu: key -> language (the shared ``choose_language`` prompt says it).
LANGUAGE_KEYS: dict[str, Language] = {"1": Language.DE, "2": Language.EN, "3": Language.FR}


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrTimers:
    """Tuning of the dial-in script (seconds)."""

    language: float = 5.0  # wait for the language key after the menu
    language_hint: float = 2.0  # silence after the first PIN prompt before the language menu
    pin_first_digit: float = 10.0  # wait for the first PIN digit after the prompt
    pin_inter_digit: float = 5.0  # wait between PIN digits
    pin_max_digits: int = 20  # a longer entry ends by itself (and is wrong)


class CollectEnd(Enum):
    """Why a digit collection ended."""

    TERMINATOR = "terminator"
    TIMEOUT = "timeout"
    MAX_DIGITS = "max_digits"


@dataclass(frozen=True, slots=True, kw_only=True)
class CollectSpec:
    """What to collect: at most ``max_digits`` keys, ended early by ``terminator`` (not part
    of the result) or by silence: ``first_timeout`` before the first key, ``inter_timeout``
    after each key."""

    max_digits: int
    first_timeout: float
    inter_timeout: float
    terminator: str | None = "#"


@dataclass(frozen=True, slots=True, kw_only=True)
class Collected:
    digits: str
    end: CollectEnd


class Channel(Protocol):
    """The caller's side of the IVR, implemented by the runtime (and by test fakes)."""

    async def play(self, clips: Sequence[Clip], *, barge_in: bool = True) -> bool:
        """Play ``clips`` to the caller; True when they played to the end.

        With ``barge_in`` a key pressed meanwhile stops the prompt at once (False is returned
        and the key stays queued for ``collect``), and a key already queued skips the prompt.
        Without it, keys pressed meanwhile are queued and the prompt plays out.
        """
        ...

    async def collect(self, spec: CollectSpec) -> Collected:
        """Collect keys, queued ones first (see ``CollectSpec``)."""
        ...

    def hold(self, clip: Clip) -> None:
        """Loop ``clip`` to the caller until ``stop_prompts``."""
        ...

    def stop_prompts(self) -> None:
        """Stop whatever plays to the caller and forget queued keys."""
        ...

    def hang_up(self) -> None:
        """End the call (BYE)."""
        ...


class ConferenceAccess(Protocol):
    """What the script needs from the conferences, bound to one call by the runtime."""

    async def failures_exhausted(self) -> bool:
        """The caller's source reached the PIN-failure limit (``pins.failures_exhausted``)."""
        ...

    async def find_pin(self, pin: str) -> tuple[Room, Role] | None:
        """The room and role a PIN opens for this call, None for a wrong PIN."""
        ...

    async def reserve_try(self) -> bool:
        """Reserve one try of the source's PIN budget before the lookup (tries in flight on
        any node count); False: the budget is used up, no lookup."""
        ...

    async def release_try(self) -> None:
        """Give back the reservation once the try's outcome is written."""
        ...

    async def reject(self, reason: RejectionReason, room: Room | None) -> None:
        """Record a rejection of this call (``rejections`` table)."""
        ...

    def admission(self, room: Room, role: Role) -> Admission:
        """Would the conference of ``room`` let a caller with ``role`` in now?"""
        ...

    def others(self, room: Room) -> int:
        """How many legs are in the conference of ``room`` now."""
        ...

    def intro(self, room: Room) -> Clip | None:
        """The room's intro announcement, None when it has none (or it cannot be read)."""
        ...

    async def join(self, room: Room, role: Role, language: Language) -> Admission:
        """Join the conference: media, join tone, call record. Returns the admission
        (``WAIT_FOR_MODERATOR``: admitted but held; anything not entering: refused)."""
        ...

    async def released(self) -> bool:
        """Wait, while held, until a moderator arrives (True) or the wait ends (False)."""
        ...


class IvrOutcome(StrEnum):
    """How the dial-in script ended."""

    JOINED = "joined"
    TOO_MANY_FAILURES = "too_many_failures"
    WRONG_PIN = "wrong_pin"
    LOCKED = "locked"
    FULL = "full"
    NOT_STARTED = "not_started"
    ENDED = "ended"
    NOT_RELEASED = "not_released"


#: Refusals after a valid PIN: prompt, rejection reason, outcome.
_REFUSALS: dict[Admission, tuple[str, RejectionReason, IvrOutcome]] = {
    Admission.LOCKED: ("conference_locked", RejectionReason.LOCKED, IvrOutcome.LOCKED),
    Admission.FULL: ("conference_full", RejectionReason.FULL, IvrOutcome.FULL),
    Admission.NOT_STARTED: ("goodbye", RejectionReason.NOT_STARTED, IvrOutcome.NOT_STARTED),
    Admission.ENDED: ("goodbye", RejectionReason.ENDED, IvrOutcome.ENDED),
}

#: Every prompt the dial-in script can play (``bridge serve`` refuses to start without them).
PROMPT_IDS: frozenset[str] = frozenset(
    {"welcome", "choose_language", "invalid_choice", "enter_pin", "wrong_pin",
     "too_many_attempts_goodbye", "waiting_for_moderator"}
    | {prompt for prompt, _, _ in _REFUSALS.values()}
) | COUNT_PROMPTS


def _pin_spec(timers: IvrTimers) -> CollectSpec:
    return CollectSpec(max_digits=timers.pin_max_digits, first_timeout=timers.pin_first_digit,
                       inter_timeout=timers.pin_inter_digit, terminator="#")


async def greet(
    ch: Channel, prompts: PromptLibrary, default: Language, timers: IvrTimers
) -> tuple[Language, Collected | None]:
    """Steps 1-2: welcome (a key there is a language choice or the PIN's first digit), the
    first PIN prompt and, for a caller who presses nothing, the language menu. Returns the
    language and the first PIN try when the caller already typed one (None: ``enter_pin``
    prompts for it)."""
    lang = default.value
    spec = _pin_spec(timers)
    if not await ch.play(prompts.sequence(lang, "welcome")):
        chosen, first = await _menu_key(ch, timers, spec, wait=0.0)
        if chosen is not None or first is not None:
            return chosen or default, first
    await ch.play(prompts.sequence(lang, "enter_pin"))
    got = await ch.collect(CollectSpec(max_digits=spec.max_digits,
                                       first_timeout=timers.language_hint,
                                       inter_timeout=spec.inter_timeout, terminator="#"))
    if got.digits or got.end is not CollectEnd.TIMEOUT:
        return default, got  # typed early (or a bare '#': an empty try)
    await ch.play(prompts.sequence(lang, "choose_language"))
    chosen, first = await _menu_key(ch, timers, spec, wait=timers.language)
    return chosen or default, first


async def _menu_key(
    ch: Channel, timers: IvrTimers, spec: CollectSpec, *, wait: float
) -> tuple[Language | None, Collected | None]:
    """One key of the language menu (within ``wait``): ``1``-``3`` choose the language; any
    other key is the first digit of the PIN, in the number's language (``#`` alone: an
    empty try); no key: (None, None)."""
    key = await ch.collect(
        CollectSpec(max_digits=1, first_timeout=wait, inter_timeout=wait, terminator=None)
    )
    if not key.digits:
        return None, None
    chosen = LANGUAGE_KEYS.get(key.digits)
    if chosen is not None:
        return chosen, None
    if key.digits == "#":
        return None, Collected(digits="", end=CollectEnd.TERMINATOR)
    rest = await ch.collect(CollectSpec(max_digits=max(1, spec.max_digits - 1),
                                        first_timeout=spec.inter_timeout,
                                        inter_timeout=spec.inter_timeout, terminator="#"))
    end = rest.end if rest.digits or rest.end is not CollectEnd.TIMEOUT else CollectEnd.TIMEOUT
    return None, Collected(digits=key.digits + rest.digits, end=end)


async def enter_pin(
    ch: Channel,
    access: ConferenceAccess,
    prompts: PromptLibrary,
    *,
    lang: str,
    timers: IvrTimers,
    policy: PinPolicy,
    first: Collected | None = None,
) -> tuple[Room, Role] | None:
    """Step 4: up to ``policy.tries_per_call`` PIN entries; None after the last failure.
    ``first``: the first try, already typed during the greeting (``greet``)."""
    spec = _pin_spec(timers)
    for attempt in range(1, policy.tries_per_call + 1):
        if attempt > 1 and await access.failures_exhausted():
            # the source's budget ran out during this call (or a parallel one)
            await access.reject(RejectionReason.TOO_MANY_FAILURES, None)
            return None
        if attempt == 1 and first is not None:
            got = first
        else:
            await ch.play(prompts.sequence(lang, "enter_pin"))
            got = await ch.collect(spec)
        if got.digits:
            if not await access.reserve_try():  # parallel calls used the budget up
                await access.reject(RejectionReason.TOO_MANY_FAILURES, None)
                return None
            try:
                found = await access.find_pin(got.digits)
                if found is not None:
                    return found
                await access.reject(RejectionReason.WRONG_PIN, None)
            finally:
                await access.release_try()  # after the wrong_pin row: never under-counted
        if attempt < policy.tries_per_call:
            await ch.play(prompts.sequence(lang, "wrong_pin"))
    return None


async def dial_in(
    ch: Channel,
    access: ConferenceAccess,
    prompts: PromptLibrary,
    *,
    language: Language,
    timers: IvrTimers | None = None,
    policy: PinPolicy = DEFAULT_PIN_POLICY,
) -> IvrOutcome:
    """The whole dial-in script (see the module docstring); returns how it ended."""
    timers = timers if timers is not None else IvrTimers()
    if await access.failures_exhausted():
        await access.reject(RejectionReason.TOO_MANY_FAILURES, None)
        await ch.play(prompts.sequence(language.value, "too_many_attempts_goodbye"))
        ch.hang_up()
        return IvrOutcome.TOO_MANY_FAILURES

    chosen, first = await greet(ch, prompts, language, timers)
    lang = chosen.value

    found = await enter_pin(ch, access, prompts, lang=lang, timers=timers, policy=policy,
                            first=first)
    if found is None:
        await ch.play(prompts.sequence(lang, "too_many_attempts_goodbye"))
        ch.hang_up()
        return IvrOutcome.WRONG_PIN
    room, role = found

    admission = access.admission(room, role)
    if not admission.enters:
        return await _refuse(ch, access, prompts, lang=lang, room=room, admission=admission)

    intro = access.intro(room)
    if intro is not None:
        await ch.play([intro])
    if not await ch.play(prompts.participant_count(lang, access.others(room))):
        ch.stop_prompts()  # cut by a key: forget it, it was meant for the announcements

    admission = await access.join(room, role, chosen)
    if not admission.enters:
        return await _refuse(ch, access, prompts, lang=lang, room=room, admission=admission)
    if admission is Admission.WAIT_FOR_MODERATOR:
        await ch.play(prompts.sequence(lang, "waiting_for_moderator"))
        ch.hold(hold_music())
        released = await access.released()
        ch.stop_prompts()
        if not released:
            return IvrOutcome.NOT_RELEASED
    return IvrOutcome.JOINED


async def _refuse(
    ch: Channel,
    access: ConferenceAccess,
    prompts: PromptLibrary,
    *,
    lang: str,
    room: Room,
    admission: Admission,
) -> IvrOutcome:
    prompt, reason, outcome = _REFUSALS[admission]
    await access.reject(reason, room)
    await ch.play(prompts.sequence(lang, prompt))
    ch.hang_up()
    return outcome
