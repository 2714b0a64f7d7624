"""The dial-in script (bridge.ivr.flows) over an in-memory channel with a fake clock.

``FakeChannel`` plays the real prompt clips in simulated time (clip length / 8 kHz) and
writes a transcript of prompt ids: ``"en/welcome"`` played out, ``"en/welcome!"`` cut by a
key (barge-in), ``"~en/welcome"`` skipped because a key was already waiting. The caller is a
script of reactions: when prompt ``id`` starts, type ``keys`` ``delay`` seconds later.
``FakeAccess`` keeps real domain ``Conference`` objects, so admission is the domain's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.conference.enums import Admission, Language, Role
from bridge.conference.model import Conference, Leg, Room
from bridge.conference.pins import PinPolicy
from bridge.ivr.flows import (
    Collected,
    CollectEnd,
    CollectSpec,
    IvrOutcome,
    IvrTimers,
    dial_in,
)
from bridge.media.prompts import Clip
from bridge.runtime.prompt_files import load_prompts
from bridge.store.base import RejectionReason

LIB = load_prompts()
KEY_GAP = 0.25  # seconds between the keys of one reaction
TIMERS = IvrTimers()


def _names() -> dict[int, str]:
    ids = ["welcome", "choose_language", "invalid_choice", "enter_pin", "wrong_pin",
           "too_many_attempts_goodbye", "goodbye", "conference_locked", "conference_full",
           "first_participant", "only_participant", "there_is_one", "there_are",
           "participants", "many_participants", "waiting_for_moderator"]
    names: dict[int, str] = {}
    for lang in ("de", "en", "fr"):
        for pid in ids:
            names[id(LIB.get(lang, pid))] = f"{lang}/{pid}"
        for n in range(101):
            names[id(LIB.number(lang, n))] = f"{lang}/{n}"
    names[id(LIB.get("en", "choose_language"))] = "choose_language"  # one shared file
    return names


NAMES = _names()
INTRO = np.arange(4000, dtype=np.int16)  # 0.5 s
NAMES[id(INTRO)] = "intro"


class FakeChannel:
    """A caller in simulated time (see the module docstring)."""

    def __init__(self, reactions: dict[str, list[str | tuple[str, float]]] | None = None,
                 ) -> None:
        self.now = 0.0
        self.reactions = {k: list(v) for k, v in (reactions or {}).items()}
        self.scheduled: list[tuple[float, str]] = []
        self.queue: deque[str] = deque()
        self.transcript: list[str] = []
        self.hung_up = False
        self.started: dict[str, float] = {}  # prompt -> when it last started
        self.first_started: dict[str, float] = {}  # prompt -> when it first started

    # -- the caller's side
    def _react(self, name: str) -> None:
        todo = self.reactions.get(name.split("/", 1)[-1]) or self.reactions.get(name)
        if not todo:
            return
        item = todo.pop(0)
        keys, delay = (item, 0.5) if isinstance(item, str) else item
        for i, key in enumerate(keys):
            self.scheduled.append((self.now + delay + i * KEY_GAP, key))
        self.scheduled.sort()

    def _arrive(self) -> None:
        while self.scheduled and self.scheduled[0][0] <= self.now:
            self.queue.append(self.scheduled.pop(0)[1])

    # -- Channel
    async def play(self, clips: Sequence[Clip], *, barge_in: bool = True) -> bool:
        assert not self.hung_up
        self._arrive()
        if barge_in and self.queue:
            self.transcript.extend("~" + NAMES[id(c)] for c in clips)
            return False
        for clip in clips:
            name = NAMES[id(clip)]
            self.started[name] = self.now
            self.first_started.setdefault(name, self.now)
            self._react(name)
            end = self.now + clip.shape[0] / 8000
            if barge_in and self.scheduled and self.scheduled[0][0] < end:
                self.now = self.scheduled[0][0]
                self._arrive()
                self.transcript.append(name + "!")
                return False
            self.now = end
            self.transcript.append(name)
        self._arrive()
        return True

    async def collect(self, spec: CollectSpec) -> Collected:
        assert not self.hung_up
        digits = ""
        timeout = spec.first_timeout
        while True:
            self._arrive()
            if self.queue:
                key = self.queue.popleft()
                if key == spec.terminator:
                    return Collected(digits=digits, end=CollectEnd.TERMINATOR)
                digits += key
                if len(digits) >= spec.max_digits:
                    return Collected(digits=digits, end=CollectEnd.MAX_DIGITS)
                timeout = spec.inter_timeout
                continue
            if not self.scheduled or self.scheduled[0][0] > self.now + timeout:
                self.now += timeout
                return Collected(digits=digits, end=CollectEnd.TIMEOUT)
            self.now = self.scheduled[0][0]

    def hold(self, clip: Clip) -> None:
        self.transcript.append("hold")

    def stop_prompts(self) -> None:
        self.transcript.append("stop")
        self.queue.clear()

    def hang_up(self) -> None:
        self.transcript.append("hangup")
        self.hung_up = True


def room(rid: int = 1, **kw: object) -> Room:
    base: dict[str, object] = {
        "id": rid, "account_id": 1, "name": f"room{rid}", "participant_pin": f"48{rid}1937",
        "moderator_pin": f"59{rid}2846",
    }
    base.update(kw)
    return Room(**base)  # type: ignore[arg-type]


class FakeAccess:
    """Conferences in memory, with the real domain deciding admission."""

    def __init__(self, *rooms: Room, failures: int = 0, released: bool = True) -> None:
        self.rooms = {r.id: r for r in rooms}
        self.pins = {}
        for r in rooms:
            self.pins[r.participant_pin] = (r, Role.PARTICIPANT)
            self.pins[r.moderator_pin] = (r, Role.MODERATOR)
        self.failures = failures
        self.released_result = released
        self.rejections: list[tuple[RejectionReason, int | None]] = []
        self.conferences: dict[int, Conference] = {}
        self.joined: list[tuple[int, Role, Language]] = []
        self.intros: dict[int, Clip] = {}
        self.before_join: list[Leg] = []  # legs that slip in between admission and join
        self.now = 1_700_000_000.0
        self.lookups = 0
        self.in_flight = 0

    def conference(self, r: Room) -> Conference:
        return self.conferences.setdefault(r.id, Conference.open(r))

    def add(self, r: Room, leg_id: str, role: Role = Role.PARTICIPANT) -> None:
        events = self.conference(r).join(
            Leg(leg_id=leg_id, role=role, language=Language.EN, joined_at=self.now), self.now)
        assert events and type(events[0]).__name__ == "ParticipantJoined"

    async def failures_exhausted(self) -> bool:
        return self.failures >= PinPolicy().max_failures

    async def find_pin(self, pin: str) -> tuple[Room, Role] | None:
        self.lookups += 1
        return self.pins.get(pin)

    async def reserve_try(self) -> bool:
        if self.failures + self.in_flight >= PinPolicy().max_failures:
            return False
        self.in_flight += 1
        return True

    async def release_try(self) -> None:
        self.in_flight -= 1

    async def reject(self, reason: RejectionReason, room: Room | None) -> None:
        self.rejections.append((reason, None if room is None else room.id))

    def admission(self, room: Room, role: Role) -> Admission:
        return self.conference(room).admit(role, self.now)

    def others(self, room: Room) -> int:
        return self.conference(room).count

    def intro(self, room: Room) -> Clip | None:
        return self.intros.get(room.id)

    async def join(self, room: Room, role: Role, language: Language) -> Admission:
        for leg in self.before_join:
            self.conference(room).join(leg, self.now)
        conf = self.conference(room)
        admission = conf.admit(role, self.now)
        events = conf.join(Leg(leg_id="caller", role=role, language=language,
                               joined_at=self.now), self.now)
        if admission.enters:
            self.joined.append((room.id, role, language))
        assert len(events) >= 1
        return admission

    async def released(self) -> bool:
        return self.released_result


async def run(ch: FakeChannel, access: FakeAccess,
              language: Language = Language.EN) -> IvrOutcome:
    return await asyncio.wait_for(dial_in(ch, access, LIB, language=language, timers=TIMERS), 5)


R1 = room(1)
PPIN, MPIN = R1.participant_pin, R1.moderator_pin


# -- language ---------------------------------------------------------------------------------


async def test_the_pin_prompt_follows_the_welcome_and_the_menu_comes_after_silence() -> None:
    ch = FakeChannel({"enter_pin": ["", PPIN + "#"]})  # nothing at the first prompt
    access = FakeAccess(R1)
    assert await run(ch, access, Language.DE) is IvrOutcome.JOINED
    assert ch.transcript[:4] == ["de/welcome", "de/enter_pin", "choose_language",
                                 "de/enter_pin!"]
    assert access.joined == [(1, Role.PARTICIPANT, Language.DE)]
    assert ch.first_started["de/enter_pin"] < 5.0  # within 5 s of the answer
    prompt_end = ch.first_started["de/enter_pin"] + LIB.get("de", "enter_pin").size / 8000
    assert ch.started["choose_language"] == pytest.approx(prompt_end + TIMERS.language_hint)
    # no language key: the PIN prompt again, after the language timeout
    menu_end = ch.started["choose_language"] + LIB.get("de", "choose_language").size / 8000
    assert ch.started["de/enter_pin"] == pytest.approx(menu_end + TIMERS.language)


@pytest.mark.parametrize(("key", "lang"), [("1", Language.DE), ("2", Language.EN),
                                           ("3", Language.FR)])
async def test_language_keys(key: str, lang: Language) -> None:
    ch = FakeChannel({"enter_pin": ["", PPIN + "#"], "choose_language": [(key, 9.0)]})
    access = FakeAccess(R1)
    assert await run(ch, access, Language.DE) is IvrOutcome.JOINED
    # the key came after the menu had played out: no barge-in
    assert ch.transcript[:4] == ["de/welcome", "de/enter_pin", "choose_language",
                                 f"{lang}/enter_pin!"]
    assert access.joined == [(1, Role.PARTICIPANT, lang)]
    assert ch.transcript[-1] == f"{lang}/first_participant"


async def test_a_key_that_is_no_language_choice_starts_the_pin_in_the_numbers_language(
) -> None:
    assert PPIN[0] not in "123"
    ch = FakeChannel({"enter_pin": [""], "choose_language": [(PPIN + "#", 1.0)]})
    access = FakeAccess(R1)
    assert await run(ch, access, Language.FR) is IvrOutcome.JOINED
    assert ch.transcript[:3] == ["fr/welcome", "fr/enter_pin", "choose_language!"]
    assert access.joined == [(1, Role.PARTICIPANT, Language.FR)]
    assert access.rejections == []


async def test_a_pin_without_hash_typed_during_the_menu_ends_on_the_inter_digit_timeout(
) -> None:
    ch = FakeChannel({"enter_pin": [""], "choose_language": [(PPIN, 1.0)]})
    access = FakeAccess(R1)
    assert await run(ch, access, Language.EN) is IvrOutcome.JOINED
    assert access.joined == [(1, Role.PARTICIPANT, Language.EN)]


async def test_a_caller_typing_the_pin_one_second_after_the_answer_joins() -> None:
    ch = FakeChannel({"welcome": [(PPIN + "#", 1.0)]})
    access = FakeAccess(R1)
    assert await run(ch, access, Language.EN) is IvrOutcome.JOINED
    # the first key cut the welcome and, being no language choice, began the PIN
    assert ch.transcript == ["en/welcome!", "en/first_participant"]
    assert access.joined == [(1, Role.PARTICIPANT, Language.EN)]
    assert access.rejections == []


async def test_a_language_key_during_the_welcome_then_the_pin() -> None:
    ch = FakeChannel({"welcome": [("3" + PPIN + "#", 1.0)]})
    access = FakeAccess(R1)
    assert await run(ch, access, Language.EN) is IvrOutcome.JOINED
    assert ch.transcript[:2] == ["en/welcome!", "fr/enter_pin!"]
    assert access.joined == [(1, Role.PARTICIPANT, Language.FR)]


async def test_a_pin_starting_with_a_language_key_typed_at_the_pin_prompt_is_a_pin() -> None:
    r = room(5, participant_pin="3141596")
    ch = FakeChannel({"enter_pin": [(r.participant_pin + "#", 0.5)]})
    access = FakeAccess(r)
    assert await run(ch, access, Language.DE) is IvrOutcome.JOINED
    assert ch.transcript[:2] == ["de/welcome", "de/enter_pin!"]
    assert access.joined == [(5, Role.PARTICIPANT, Language.DE)]


# -- PIN ----------------------------------------------------------------------------------------


async def test_participant_pin_joins_as_participant_first_in_room() -> None:
    ch = FakeChannel({"enter_pin": [PPIN + "#"]})
    access = FakeAccess(R1)
    assert await run(ch, access) is IvrOutcome.JOINED
    assert access.joined == [(1, Role.PARTICIPANT, Language.EN)]
    assert ch.transcript[-2:] == ["en/enter_pin!", "en/first_participant"]
    assert "hangup" not in ch.transcript and access.rejections == []


async def test_moderator_pin_joins_as_moderator_and_hears_the_count() -> None:
    ch = FakeChannel({"enter_pin": [MPIN + "#"]})
    access = FakeAccess(R1)
    access.add(R1, "a")
    access.add(R1, "b")
    access.add(R1, "c")
    assert await run(ch, access) is IvrOutcome.JOINED
    assert access.joined == [(1, Role.MODERATOR, Language.EN)]
    assert ch.transcript[-3:] == ["en/there_are", "en/3", "en/participants"]


async def test_one_other_participant() -> None:
    ch = FakeChannel({"enter_pin": [PPIN + "#"]})
    access = FakeAccess(R1)
    access.add(R1, "a")
    assert await run(ch, access) is IvrOutcome.JOINED
    assert ch.transcript[-1] == "en/there_is_one"


async def test_pin_typed_after_the_prompt_without_barge_in() -> None:
    ch = FakeChannel({"enter_pin": [(PPIN + "#", 8.0)]})
    access = FakeAccess(R1)
    assert await run(ch, access) is IvrOutcome.JOINED
    assert "en/enter_pin" in ch.transcript


async def test_pin_ends_on_inter_digit_timeout_without_hash() -> None:
    ch = FakeChannel({"enter_pin": [PPIN]})
    access = FakeAccess(R1)
    assert await run(ch, access) is IvrOutcome.JOINED
    assert access.joined == [(1, Role.PARTICIPANT, Language.EN)]


async def test_three_wrong_pins_record_three_rejections_and_hang_up() -> None:
    ch = FakeChannel({"enter_pin": ["111222#", "333444#", ("555666#", 7.0)]})
    access = FakeAccess(R1)
    assert await run(ch, access) is IvrOutcome.WRONG_PIN
    assert access.rejections == [(RejectionReason.WRONG_PIN, None)] * 3
    assert ch.transcript[1:] == [
        "en/enter_pin!", "en/wrong_pin", "en/enter_pin!", "en/wrong_pin", "en/enter_pin",
        "en/too_many_attempts_goodbye", "hangup",
    ]
    assert access.joined == []


async def test_wrong_then_right_pin_joins() -> None:
    ch = FakeChannel({"enter_pin": ["111222#", MPIN + "#"]})
    access = FakeAccess(R1)
    assert await run(ch, access) is IvrOutcome.JOINED
    assert access.rejections == [(RejectionReason.WRONG_PIN, None)]
    assert access.joined == [(1, Role.MODERATOR, Language.EN)]


async def test_barge_in_on_wrong_pin_prompt_takes_the_next_pin() -> None:
    ch = FakeChannel({"enter_pin": ["111222#"], "wrong_pin": [PPIN + "#"]})
    access = FakeAccess(R1)
    assert await run(ch, access) is IvrOutcome.JOINED
    assert ch.transcript[1:4] == ["en/enter_pin!", "en/wrong_pin!", "~en/enter_pin"]


async def test_silence_uses_up_the_tries_without_recording_guesses() -> None:
    ch = FakeChannel()
    access = FakeAccess(R1)
    assert await run(ch, access) is IvrOutcome.WRONG_PIN
    assert access.rejections == []
    # the greeting's prompt, then one per try (after the menu)
    assert ch.transcript.count("en/enter_pin") == 4
    assert ch.transcript[-2:] == ["en/too_many_attempts_goodbye", "hangup"]
    assert ch.now >= TIMERS.language + 3 * TIMERS.pin_first_digit


async def test_too_many_recent_failures_rejects_before_the_pin_prompt() -> None:
    ch = FakeChannel({"enter_pin": [PPIN + "#"]})
    access = FakeAccess(R1, failures=10)
    assert await run(ch, access) is IvrOutcome.TOO_MANY_FAILURES
    assert access.rejections == [(RejectionReason.TOO_MANY_FAILURES, None)]
    assert "en/enter_pin" not in ch.transcript and "en/enter_pin!" not in ch.transcript
    assert ch.transcript[-2:] == ["en/too_many_attempts_goodbye", "hangup"]


async def test_nine_recent_failures_still_get_the_prompt() -> None:
    ch = FakeChannel({"enter_pin": [PPIN + "#"]})
    access = FakeAccess(R1, failures=9)
    assert await run(ch, access) is IvrOutcome.JOINED



class CountingAccess(FakeAccess):
    """Wrong PINs count against the source, as the store does."""

    async def reject(self, reason: RejectionReason, room: Room | None) -> None:
        await super().reject(reason, room)
        if reason is RejectionReason.WRONG_PIN:
            self.failures += 1


async def test_source_budget_is_checked_before_every_try() -> None:
    """Nine failures on record: one more guess, then no further try in this call."""
    ch = FakeChannel({"enter_pin": ["111222#", PPIN + "#"]})
    access = CountingAccess(R1, failures=9)
    assert await run(ch, access) is not IvrOutcome.JOINED
    assert access.rejections == [(RejectionReason.WRONG_PIN, None),
                                 (RejectionReason.TOO_MANY_FAILURES, None)]
    assert access.joined == []
    assert ch.transcript.count("en/enter_pin!") + ch.transcript.count("en/enter_pin") == 1


async def test_no_lookup_without_a_reserved_try() -> None:
    """Tries in flight of parallel calls fill the budget: the typed PIN is not looked up."""
    ch = FakeChannel({"enter_pin": [PPIN + "#"]})
    access = CountingAccess(R1, failures=7)
    access.in_flight = 3  # three other calls are checking a PIN right now
    assert await run(ch, access) is IvrOutcome.WRONG_PIN
    assert access.lookups == 0 and access.joined == []
    assert access.rejections == [(RejectionReason.TOO_MANY_FAILURES, None)]
    assert "en/too_many_attempts_goodbye" in ch.transcript

# -- admission -----------------------------------------------------------------------------------


async def test_locked_room_refuses_a_participant() -> None:
    ch = FakeChannel({"enter_pin": [PPIN + "#"]})
    access = FakeAccess(R1)
    access.add(R1, "m", Role.MODERATOR)
    access.conference(R1).locked = True
    assert await run(ch, access) is IvrOutcome.LOCKED
    assert access.rejections == [(RejectionReason.LOCKED, 1)]
    assert ch.transcript[-2:] == ["en/conference_locked", "hangup"]
    assert access.joined == []


async def test_locked_room_admits_a_moderator() -> None:
    ch = FakeChannel({"enter_pin": [MPIN + "#"]})
    access = FakeAccess(R1)
    access.add(R1, "m", Role.MODERATOR)
    access.conference(R1).locked = True
    assert await run(ch, access) is IvrOutcome.JOINED
    assert access.joined == [(1, Role.MODERATOR, Language.EN)]


async def test_full_room_refuses_even_a_moderator() -> None:
    r = room(2, max_participants=2)
    ch = FakeChannel({"enter_pin": [r.moderator_pin + "#"]})
    access = FakeAccess(r)
    access.add(r, "a")
    access.add(r, "b")
    assert await run(ch, access) is IvrOutcome.FULL
    assert access.rejections == [(RejectionReason.FULL, 2)]
    assert ch.transcript[-2:] == ["en/conference_full", "hangup"]


async def test_room_filled_during_the_prompts_refuses_at_join() -> None:
    r = room(2, max_participants=1)
    ch = FakeChannel({"enter_pin": [r.participant_pin + "#"]})
    access = FakeAccess(r)
    access.before_join.append(Leg(leg_id="quick", role=Role.PARTICIPANT,
                                  language=Language.EN, joined_at=0.0))
    assert await run(ch, access) is IvrOutcome.FULL
    assert ch.transcript[-3:] == ["en/first_participant", "en/conference_full", "hangup"]
    assert access.rejections == [(RejectionReason.FULL, 2)]


async def test_room_outside_its_schedule_says_goodbye() -> None:
    r = room(3, starts_at=2_000_000_000.0)
    ch = FakeChannel({"enter_pin": [r.participant_pin + "#"]})
    access = FakeAccess(r)
    assert await run(ch, access) is IvrOutcome.NOT_STARTED
    assert access.rejections == [(RejectionReason.NOT_STARTED, 3)]
    assert ch.transcript[-2:] == ["en/goodbye", "hangup"]


async def test_intro_plays_before_the_count() -> None:
    ch = FakeChannel({"enter_pin": [PPIN + "#"]})
    access = FakeAccess(R1)
    access.intros[1] = INTRO
    assert await run(ch, access) is IvrOutcome.JOINED
    assert ch.transcript[-2:] == ["intro", "en/first_participant"]


async def test_intro_and_count_are_cut_by_a_key_which_is_then_forgotten() -> None:
    ch = FakeChannel({"enter_pin": [PPIN + "#"], "intro": [("*1*1", 0.1)]})
    access = FakeAccess(R1)
    access.intros[1] = INTRO
    access.add(R1, "a")
    assert await run(ch, access) is IvrOutcome.JOINED
    assert ch.transcript[-3:] == ["intro!", "~en/there_is_one", "stop"]
    assert access.joined == [(1, Role.PARTICIPANT, Language.EN)]


async def test_the_goodbye_after_wrong_pins_is_cut_by_a_key() -> None:
    ch = FakeChannel({"enter_pin": ["111222#", "333444#", "555666#"],
                      "too_many_attempts_goodbye": [("9", 0.1)]})
    access = FakeAccess(R1)
    assert await run(ch, access) is IvrOutcome.WRONG_PIN
    assert ch.transcript[-2:] == ["en/too_many_attempts_goodbye!", "hangup"]


async def test_waiting_for_the_moderator_holds_then_joins() -> None:
    r = room(4, wait_for_moderator=True)
    ch = FakeChannel({"enter_pin": [r.participant_pin + "#"]})
    access = FakeAccess(r)
    assert await run(ch, access) is IvrOutcome.JOINED
    assert ch.transcript[-4:] == ["en/first_participant", "en/waiting_for_moderator", "hold",
                                  "stop"]
    assert access.conference(r).legs["caller"].waiting


async def test_waiting_that_ends_without_a_moderator() -> None:
    r = room(4, wait_for_moderator=True)
    ch = FakeChannel({"enter_pin": [r.participant_pin + "#"]})
    access = FakeAccess(r, released=False)
    assert await run(ch, access) is IvrOutcome.NOT_RELEASED


async def test_moderator_does_not_wait() -> None:
    r = room(4, wait_for_moderator=True)
    ch = FakeChannel({"enter_pin": [r.moderator_pin + "#"]})
    access = FakeAccess(r)
    assert await run(ch, access) is IvrOutcome.JOINED
    assert "hold" not in ch.transcript


# -- property: any keys from the wire end in a join or a hang-up ---------------------------------

KEYS = st.text(alphabet="0123456789*#ABCD", max_size=40)


@settings(max_examples=150, deadline=None)
@given(welcome=KEYS, menu=KEYS, pins=st.lists(KEYS, max_size=4))
def test_any_keys_end_in_join_or_hangup(welcome: str, menu: str, pins: list[str]) -> None:
    reactions: dict[str, list[str | tuple[str, float]]] = {
        "welcome": [welcome], "choose_language": [menu],
        "enter_pin": list(pins), "wrong_pin": list(pins)}
    ch = FakeChannel(reactions)
    access = FakeAccess(R1)
    outcome = asyncio.run(run(ch, access))
    wrong = [r for r in access.rejections if r[0] is RejectionReason.WRONG_PIN]
    assert len(wrong) <= 3
    if outcome is IvrOutcome.JOINED:
        assert not ch.hung_up and len(access.joined) == 1
    else:
        assert outcome is IvrOutcome.WRONG_PIN
        assert ch.transcript[-1] == "hangup" and access.joined == []
    prompts = [t.lstrip("~").rstrip("!") for t in ch.transcript]
    assert 1 <= sum(p.endswith("/enter_pin") for p in prompts) <= 4
