"""Events of a conference: past-tense, frozen, slotted, keyword-only dataclasses.

``Conference.join``/``leave``/``handle`` return lists of these, in the order they happened.
Times (``at``) are the ``now`` passed in (UTC epoch seconds, see ``model``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bridge.conference.commands import Command
from bridge.conference.enums import Admission, LeaveReason, Role

__all__ = [
    "AllOthersMuted",
    "AllOthersUnmuted",
    "CommandRefused",
    "ConferenceEnded",
    "ConferenceLocked",
    "ConferenceUnlocked",
    "Event",
    "HelpRequested",
    "JoinRefused",
    "ParticipantCountReported",
    "ParticipantDeafened",
    "ParticipantJoined",
    "ParticipantLeft",
    "ParticipantMuted",
    "ParticipantUndeafened",
    "ParticipantUnmuted",
    "RefusalReason",
    "TalkingStarted",
    "TalkingStopped",
    "WaitingEnded",
]


class RefusalReason(StrEnum):
    """Why a command was refused (the IVR picks the prompt from it)."""

    NOT_MODERATOR = "not_moderator"
    UNKNOWN_ACTOR = "unknown_actor"
    UNKNOWN_LEG = "unknown_leg"
    NOTHING_TO_DO = "nothing_to_do"
    CONFERENCE_ENDED = "conference_ended"


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every conference event."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantJoined(Event):
    leg: str
    role: Role
    waiting: bool
    count: int
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinRefused(Event):
    leg: str
    role: Role
    admission: Admission
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingEnded(Event):
    """The first moderator arrived: the waiting legs are now in the conference."""

    legs: tuple[str, ...]
    by: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantLeft(Event):
    leg: str
    reason: LeaveReason
    count: int  # legs remaining
    at: float
    by: str | None = None  # who kicked/ended, None for a hangup
    announce: bool = True  # a kick: the leg hears "you have been removed" before the BYE


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantMuted(Event):
    leg: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantUnmuted(Event):
    leg: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantDeafened(Event):
    leg: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantUndeafened(Event):
    leg: str
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AllOthersMuted(Event):
    by: str
    legs: tuple[str, ...]  # the legs whose state changed


@dataclass(frozen=True, slots=True, kw_only=True)
class AllOthersUnmuted(Event):
    by: str
    legs: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceLocked(Event):
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceUnlocked(Event):
    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceEnded(Event):
    by: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class HelpRequested(Event):
    """Play the keypad help for ``role`` to ``by``."""

    by: str
    role: Role


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantCountReported(Event):
    """Tell ``by`` that ``count`` legs are in the conference."""

    by: str
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandRefused(Event):
    by: str
    command: Command
    reason: RefusalReason


@dataclass(frozen=True, slots=True, kw_only=True)
class TalkingStarted(Event):
    """The media's voice activity detection heard ``leg`` start talking."""

    leg: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TalkingStopped(Event):
    """``leg`` stopped talking (after the VAD's hangover)."""

    leg: str
