"""Commands to a conference: imperative, frozen, slotted, keyword-only dataclasses.

The keypad, the web panel and the CLI issue the same commands. ``by`` names who issues the
command: a leg id, or a system actor (``"web"``, ``"cli"``, ``"scheduler"``) that acts with
moderator rights. Permissions are checked by ``Conference.handle`` (``model.PERMISSIONS``); a
forbidden command yields a ``CommandRefused`` event, never an exception.

For ``muted``/``deaf``/``locked`` style switches, ``None`` means *toggle* (the keypad keys
toggle), ``True``/``False`` set the state explicitly (the web panel's buttons).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Command",
    "EndConference",
    "KickLastJoined",
    "KickParticipant",
    "LockConference",
    "MuteAllOthers",
    "MuteParticipant",
    "QueryParticipantCount",
    "RequestHelp",
    "SetDeaf",
    "ToggleLock",
    "UnlockConference",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Base of every conference command."""

    by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestHelp(Command):
    """Play the keypad help to the issuer (``*0``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryParticipantCount(Command):
    """Tell the issuer how many are in the conference (``*2``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MuteParticipant(Command):
    """Mute/unmute ``leg``; ``muted=None`` toggles (``*1`` mutes/unmutes oneself)."""

    leg: str
    muted: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetDeaf(Command):
    """Stop/resume sending the mix to ``leg``; ``deaf=None`` toggles."""

    leg: str
    deaf: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MuteAllOthers(Command):
    """Mute/unmute every participant but the issuer (``*4``); ``muted=None`` toggles."""

    muted: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KickParticipant(Command):
    """Remove ``leg`` from the conference; ``announce=False``: without the "you have been
    removed" prompt (the call ends at once)."""

    leg: str
    announce: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class KickLastJoined(Command):
    """Remove the participant (not a moderator) who joined last (``*5``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LockConference(Command):
    """Refuse further participants (moderators still get in)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UnlockConference(Command):
    """Admit participants again."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ToggleLock(Command):
    """Lock if unlocked, unlock if locked (``*3``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EndConference(Command):
    """Disconnect everyone and end the conference (``*7``)."""
