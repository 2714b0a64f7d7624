"""Enumerations shared by the conference model, its commands and its events."""

from __future__ import annotations

from enum import Enum, StrEnum


class Role(StrEnum):
    """Role decided by the PIN entered (one prompt, two PINs: the FreeSWITCH model)."""

    PARTICIPANT = "participant"
    MODERATOR = "moderator"


class Language(StrEnum):
    """Menu languages offered by the IVR."""

    DE = "de"
    EN = "en"
    FR = "fr"


class LeaveReason(StrEnum):
    """Why a leg left; the values are stored verbatim in ``call_records.leave_reason``."""

    HANGUP = "hangup"
    KICKED = "kicked"
    CONFERENCE_ENDED = "conference_ended"
    INTERRUPTED = "interrupted"


class Admission(Enum):
    """Outcome of ``Conference.admit``."""

    ADMITTED = "admitted"
    WAIT_FOR_MODERATOR = "wait_for_moderator"  # admitted, but held until a moderator joins
    LOCKED = "locked"
    FULL = "full"
    NOT_STARTED = "not_started"
    ENDED = "ended"

    @property
    def enters(self) -> bool:
        """True when the caller is let into the conference (possibly waiting)."""
        return self in (Admission.ADMITTED, Admission.WAIT_FOR_MODERATOR)
