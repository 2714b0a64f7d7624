"""Keypad: every sequence, the state table, timeouts with a fake clock."""

from __future__ import annotations

import pytest

from bridge.conference import commands as cmd
from bridge.conference.keypad import (
    KEYPAD_TABLE,
    TRANSITIONS,
    Keypad,
    KeypadInput,
    KeypadState,
    KeypadTimers,
    UnknownSequence,
    help_lines,
)
from bridge.conference.model import PERMISSIONS, Permission

LEG = "leg-7"

EXPECTED: dict[str, cmd.Command | UnknownSequence] = {
    "*0": cmd.RequestHelp(by=LEG),
    "*1": cmd.MuteParticipant(by=LEG, leg=LEG, muted=None),
    "*2": cmd.QueryParticipantCount(by=LEG),
    "*3": cmd.ToggleLock(by=LEG),
    "*4": cmd.MuteAllOthers(by=LEG, muted=None),
    "*5": cmd.KickLastJoined(by=LEG),
    "*6": UnknownSequence(sequence="*6"),
    "*7": cmd.EndConference(by=LEG),
    "*8": UnknownSequence(sequence="*8"),
    "*9": UnknownSequence(sequence="*9"),
    "*A": UnknownSequence(sequence="*A"),
    "*D": UnknownSequence(sequence="*D"),
}


def state(pad: Keypad) -> KeypadState:
    return pad.state


def feed(pad: Keypad, keys: str, start: float = 100.0, gap: float = 0.2) -> list[object]:
    return [pad.press(key, start + i * gap) for i, key in enumerate(keys)]


@pytest.mark.parametrize(("sequence", "expected"), sorted(EXPECTED.items()))
def test_every_sequence(sequence: str, expected: object) -> None:
    pad = Keypad(LEG)
    assert feed(pad, sequence) == [None, expected]
    assert pad.state is KeypadState.IDLE
    assert pad.next_timer() is None


def test_moderator_only_flags_match_the_conference_permissions() -> None:
    for digit, spec in KEYPAD_TABLE.items():
        command = spec.make(LEG)
        needs_moderator = PERMISSIONS[type(command)] is Permission.MODERATOR
        assert spec.moderator_only == needs_moderator, digit
        assert spec.sequence == "*" + digit


def test_transition_table_is_total() -> None:
    assert set(TRANSITIONS) == {(s, i) for s in KeypadState for i in KeypadInput}


def test_digits_without_star_are_ignored() -> None:
    pad = Keypad(LEG)
    assert feed(pad, "1234#0") == [None] * 6
    assert pad.state is KeypadState.IDLE


def test_hash_cancels_a_started_sequence() -> None:
    pad = Keypad(LEG)
    assert feed(pad, "*#1") == [None, None, None]


def test_double_star_restarts() -> None:
    pad = Keypad(LEG)
    assert feed(pad, "**7") == [None, None, cmd.EndConference(by=LEG)]


def test_timeout_resets_via_handle_timer() -> None:
    pad = Keypad(LEG, KeypadTimers(inter_digit=2.0))
    assert pad.press("*", 10.0) is None
    assert pad.next_timer() == 12.0
    pad.handle_timer(11.9)
    assert state(pad) is KeypadState.STARTED
    pad.handle_timer(12.0)
    assert state(pad) is KeypadState.IDLE
    assert pad.next_timer() is None
    assert pad.press("1", 12.1) is None


def test_late_digit_is_ignored_even_without_handle_timer() -> None:
    pad = Keypad(LEG, KeypadTimers(inter_digit=2.0))
    pad.press("*", 10.0)
    assert pad.press("1", 12.5) is None
    assert pad.press("1", 12.6) is None
    # a digit in time completes
    pad.press("*", 20.0)
    assert pad.press("1", 21.99) == cmd.MuteParticipant(by=LEG, leg=LEG)


def test_sequences_can_follow_each_other() -> None:
    pad = Keypad(LEG)
    out = feed(pad, "*1*2*9*0")
    assert [o for o in out if o is not None] == [
        cmd.MuteParticipant(by=LEG, leg=LEG),
        cmd.QueryParticipantCount(by=LEG),
        UnknownSequence(sequence="*9"),
        cmd.RequestHelp(by=LEG),
    ]


@pytest.mark.parametrize("bad", ["", "x", "11", "E", "**"])
def test_non_dtmf_keys_raise(bad: str) -> None:
    with pytest.raises(ValueError, match="DTMF"):
        Keypad(LEG).press(bad, 0.0)


def test_help_lines_per_role() -> None:
    assert [line[:2] for line in help_lines(moderator=False)] == ["*0", "*1", "*2"]
    assert [line[:2] for line in help_lines(moderator=True)] == [
        "*0", "*1", "*2", "*3", "*4", "*5", "*7"
    ]
