"""The dial-in IVR as a plain async script over a :class:`Channel` (design notes §5-6).

The script talks to the caller only through ``Channel`` (play with barge-in, collect digits,
loop hold music, hang up) and to the conferences only through ``ConferenceAccess`` (PIN
lookup, failure counter, admission, join). It imports no asyncio and reads no clock: the
runtime (``bridge.runtime.controller``) implements both with futures fed by the media
engine's ``PromptFinished``/``LegDigitReceived`` events and loop timers; the unit tests use an
in-memory channel with a fake clock. A caller hanging up cancels the task running the script.

The script, in order (``L`` = the access number's language until the caller picks one):

1. ``welcome`` in ``L`` (barge-in).
2. ``choose_language`` (shared, barge-in); one digit within ``IvrTimers.language``:
   ``1`` German, ``2`` English, ``3`` French. No digit: ``L`` stays. Any other key:
   ``invalid_choice`` (in ``L``) and ``L`` stays. From here on everything plays in the chosen
   language.
3. Brute-force check (design notes §6): when the caller's source has ``PinPolicy.max_failures``
   wrong PINs within ``failure_window``: rejection ``too_many_failures``,
   ``too_many_attempts_goodbye`` (no barge-in), hang up.
4. ``enter_pin`` (barge-in), then collect the PIN: ``#`` ends it; so does the inter-digit
   timeout after at least one digit, or ``IvrTimers.pin_max_digits`` digits. A try with no
   digit at all (first-digit timeout, or a bare ``#``) is not looked up and records nothing.
   A wrong PIN (unknown, or another room's PIN on a number bound to a room) records the
   rejection ``wrong_pin`` under the caller's source. After a failed try 1 or 2:
   ``wrong_pin`` (barge-in) then step 4 again. After the third failed try:
   ``too_many_attempts_goodbye`` (no barge-in) and hang up.
5. Admission (``Conference.admit``, the domain decides; moderators enter locked rooms):
   locked -> ``conference_locked``; full -> ``conference_full``; outside the room's schedule
   (not started / ended) -> ``goodbye``; each preceded by a rejection with the matching
   reason (``locked``/``full``/``not_started``/``ended``) and followed by hang up.
   Every rejection is recorded before its prompt plays, so it is stored by the time of the BYE.
6. The room's intro recording, if the room has one (no barge-in).
7. ``first_participant`` when nobody else is in the conference, else ``there_is_one`` or
   ``there_are`` N ``participants`` (no barge-in).
8. Join. The join is checked again (the room may have filled or been locked meanwhile): a
   refusal then takes the branch of step 5. A participant held for the moderator hears
   ``waiting_for_moderator`` and looped hold music until the moderator arrives.

Digits typed while a barge-in prompt plays stop it at once and are kept for the next
collection (type-ahead); a barge-in prompt is skipped when a digit is already waiting.
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
]

#: Language menu: key -> language (the shared ``choose_language`` prompt says it).
LANGUAGE_KEYS: dict[str, Language] = {"1": Language.DE, "2": Language.EN, "3": Language.FR}


@dataclass(frozen=True, slots=True, kw_only=True)
class IvrTimers:
    """Tuning of the dial-in script (seconds)."""

    language: float = 5.0  # wait for the language key after the menu
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


async def choose_language(
    ch: Channel, prompts: PromptLibrary, default: Language, timers: IvrTimers
) -> Language:
    """Steps 1-2: welcome and the language menu; the number's language on timeout."""
    await ch.play(prompts.sequence(default.value, "welcome"))
    await ch.play(prompts.sequence(default.value, "choose_language"))
    got = await ch.collect(
        CollectSpec(max_digits=1, first_timeout=timers.language, inter_timeout=timers.language,
                    terminator=None)
    )
    if not got.digits:
        return default
    chosen = LANGUAGE_KEYS.get(got.digits)
    if chosen is None:
        await ch.play(prompts.sequence(default.value, "invalid_choice"))
        return default
    return chosen


async def enter_pin(
    ch: Channel,
    access: ConferenceAccess,
    prompts: PromptLibrary,
    *,
    lang: str,
    timers: IvrTimers,
    policy: PinPolicy,
) -> tuple[Room, Role] | None:
    """Step 4: up to ``policy.tries_per_call`` PIN entries; None after the last failure."""
    spec = CollectSpec(max_digits=timers.pin_max_digits, first_timeout=timers.pin_first_digit,
                       inter_timeout=timers.pin_inter_digit, terminator="#")
    for attempt in range(1, policy.tries_per_call + 1):
        if attempt > 1 and await access.failures_exhausted():
            return None  # the source's budget ran out during this call (or a parallel one)
        await ch.play(prompts.sequence(lang, "enter_pin"))
        got = await ch.collect(spec)
        if got.digits:
            found = await access.find_pin(got.digits)
            if found is not None:
                return found
            await access.reject(RejectionReason.WRONG_PIN, None)
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
    chosen = await choose_language(ch, prompts, language, timers)
    lang = chosen.value

    if await access.failures_exhausted():
        await access.reject(RejectionReason.TOO_MANY_FAILURES, None)
        await ch.play(prompts.sequence(lang, "too_many_attempts_goodbye"), barge_in=False)
        ch.hang_up()
        return IvrOutcome.TOO_MANY_FAILURES

    found = await enter_pin(ch, access, prompts, lang=lang, timers=timers, policy=policy)
    if found is None:
        await ch.play(prompts.sequence(lang, "too_many_attempts_goodbye"), barge_in=False)
        ch.hang_up()
        return IvrOutcome.WRONG_PIN
    room, role = found

    admission = access.admission(room, role)
    if not admission.enters:
        return await _refuse(ch, access, prompts, lang=lang, room=room, admission=admission)

    intro = access.intro(room)
    if intro is not None:
        await ch.play([intro], barge_in=False)
    await ch.play(prompts.participant_count(lang, access.others(room)), barge_in=False)

    admission = await access.join(room, role, chosen)
    if not admission.enters:
        return await _refuse(ch, access, prompts, lang=lang, room=room, admission=admission)
    if admission is Admission.WAIT_FOR_MODERATOR:
        await ch.play(prompts.sequence(lang, "waiting_for_moderator"), barge_in=False)
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
    await ch.play(prompts.sequence(lang, prompt), barge_in=False)
    ch.hang_up()
    return outcome
