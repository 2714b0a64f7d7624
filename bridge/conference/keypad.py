"""In-conference keypad: DTMF sequences to conference commands.

Keypad layout (quote this table in the README and the help prompt)::

    Key  Who          Action
    *0   everyone     help: list the keys available to you
    *1   everyone     mute / unmute yourself
    *2   everyone     announce the number of participants
    *3   moderators   lock / unlock the conference (moderators can always join)
    *4   moderators   mute / unmute all other participants (moderators keep their voice)
    *5   moderators   remove the participant who joined last
    *7   moderators   end the conference for everyone
    #    everyone     cancel a started sequence

Grammar: ``*`` starts a sequence and the next digit completes it. ``#`` or a pause longer than
``KeypadTimers.inter_digit`` after ``*`` cancels it; a second ``*`` starts over. Digits that do
not follow a ``*`` are ignored (they belong to nobody: DTMF never reaches the other
participants). A ``*`` followed by an unassigned digit yields ``UnknownSequence``.

The keypad maps keys to commands only; ``Conference.handle`` checks permissions, so a
participant pressing ``*7`` gets a ``CommandRefused`` event (one authority for permissions).

Sans-I/O: ``press(key, now)``, ``next_timer()``, ``handle_timer(now)`` with ``now`` in
monotonic seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from bridge.conference import commands as cmd

__all__ = [
    "KEYPAD_TABLE",
    "TRANSITIONS",
    "KeySpec",
    "Keypad",
    "KeypadAction",
    "KeypadInput",
    "KeypadOutput",
    "KeypadState",
    "KeypadTimers",
    "UnknownSequence",
]

DTMF_KEYS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeypadTimers:
    """Tuning: how long after ``*`` the completing digit may come (seconds)."""

    inter_digit: float = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class KeySpec:
    """One row of the keypad table."""

    sequence: str
    moderator_only: bool
    description: str
    make: Callable[[str], cmd.Command]


def _mute_self(leg: str) -> cmd.Command:
    return cmd.MuteParticipant(by=leg, leg=leg, muted=None)


#: digit after ``*`` -> what it does. ``moderator_only`` documents (and the tests check it
#: against ``model.PERMISSIONS``); the conference enforces it.
KEYPAD_TABLE: dict[str, KeySpec] = {
    "0": KeySpec(
        sequence="*0",
        moderator_only=False,
        description="help",
        make=lambda leg: cmd.RequestHelp(by=leg),
    ),
    "1": KeySpec(
        sequence="*1", moderator_only=False, description="mute/unmute yourself", make=_mute_self
    ),
    "2": KeySpec(
        sequence="*2",
        moderator_only=False,
        description="participant count",
        make=lambda leg: cmd.QueryParticipantCount(by=leg),
    ),
    "3": KeySpec(
        sequence="*3",
        moderator_only=True,
        description="lock/unlock the conference",
        make=lambda leg: cmd.ToggleLock(by=leg),
    ),
    "4": KeySpec(
        sequence="*4",
        moderator_only=True,
        description="mute/unmute all other participants",
        make=lambda leg: cmd.MuteAllOthers(by=leg, muted=None),
    ),
    "5": KeySpec(
        sequence="*5",
        moderator_only=True,
        description="remove the participant who joined last",
        make=lambda leg: cmd.KickLastJoined(by=leg),
    ),
    "7": KeySpec(
        sequence="*7",
        moderator_only=True,
        description="end the conference for everyone",
        make=lambda leg: cmd.EndConference(by=leg),
    ),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class UnknownSequence:
    """``*`` followed by a key with no meaning (the IVR may play "invalid key")."""

    sequence: str


KeypadOutput = cmd.Command | UnknownSequence | None


class KeypadState(Enum):
    IDLE = "idle"  # no sequence started
    STARTED = "started"  # '*' pressed, waiting for the completing key


class KeypadInput(Enum):
    STAR = "star"
    HASH = "hash"
    KEY = "key"  # any other DTMF key (0-9, A-D)
    TIMEOUT = "timeout"


class KeypadAction(Enum):
    NONE = "none"
    ARM = "arm"  # (re)start the inter-digit timer
    COMPLETE = "complete"  # look the key up in KEYPAD_TABLE
    CANCEL = "cancel"


#: The keypad state machine. Every (state, input) pair is listed.
TRANSITIONS: dict[tuple[KeypadState, KeypadInput], tuple[KeypadState, KeypadAction]] = {
    (KeypadState.IDLE, KeypadInput.STAR): (KeypadState.STARTED, KeypadAction.ARM),
    (KeypadState.IDLE, KeypadInput.HASH): (KeypadState.IDLE, KeypadAction.NONE),
    (KeypadState.IDLE, KeypadInput.KEY): (KeypadState.IDLE, KeypadAction.NONE),
    (KeypadState.IDLE, KeypadInput.TIMEOUT): (KeypadState.IDLE, KeypadAction.NONE),
    (KeypadState.STARTED, KeypadInput.STAR): (KeypadState.STARTED, KeypadAction.ARM),
    (KeypadState.STARTED, KeypadInput.HASH): (KeypadState.IDLE, KeypadAction.CANCEL),
    (KeypadState.STARTED, KeypadInput.KEY): (KeypadState.IDLE, KeypadAction.COMPLETE),
    (KeypadState.STARTED, KeypadInput.TIMEOUT): (KeypadState.IDLE, KeypadAction.CANCEL),
}


class Keypad:
    """Keypad state machine of one leg in a conference."""

    __slots__ = ("_deadline", "leg_id", "state", "timers")

    def __init__(self, leg_id: str, timers: KeypadTimers | None = None) -> None:
        self.leg_id = leg_id
        self.timers = timers if timers is not None else KeypadTimers()
        self.state = KeypadState.IDLE
        self._deadline: float | None = None

    def next_timer(self) -> float | None:
        """Monotonic deadline of the inter-digit timeout, or None."""
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Cancel a started sequence whose inter-digit time has run out."""
        if self._deadline is not None and now >= self._deadline:
            self._step(KeypadInput.TIMEOUT, "", now)

    def press(self, key: str, now: float) -> KeypadOutput:
        """Feed one DTMF key; return the command it completes, ``UnknownSequence`` or None."""
        if key not in DTMF_KEYS or len(key) != 1:
            raise ValueError(f"not a DTMF key: {key!r}")
        self.handle_timer(now)
        if key == "*":
            kind = KeypadInput.STAR
        elif key == "#":
            kind = KeypadInput.HASH
        else:
            kind = KeypadInput.KEY
        return self._step(kind, key, now)

    def _step(self, kind: KeypadInput, key: str, now: float) -> KeypadOutput:
        self.state, action = TRANSITIONS[(self.state, kind)]
        if action is KeypadAction.ARM:
            self._deadline = now + self.timers.inter_digit
            return None
        if action is KeypadAction.NONE:
            return None
        self._deadline = None
        if action is KeypadAction.CANCEL:
            return None
        spec = KEYPAD_TABLE.get(key)
        if spec is None:
            return UnknownSequence(sequence="*" + key)
        return spec.make(self.leg_id)


def help_lines(moderator: bool) -> list[str]:
    """The keys available to a role, as ``"*1: mute/unmute yourself"`` lines (for prompts)."""
    return [
        f"{spec.sequence}: {spec.description}"
        for spec in KEYPAD_TABLE.values()
        if moderator or not spec.moderator_only
    ]
