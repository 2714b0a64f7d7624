"""Conference domain model: rooms (persistent), legs (runtime) and one conference in use.

Pure domain, no I/O and no clock. Every method that needs the time takes ``now``.

Clock convention: the conference domain takes ``now`` as **UTC epoch seconds** (a float, like
``time.time()``), not a monotonic reading, because a room's schedule (``starts_at``/``ends_at``)
is a calendar time and ``joined_at`` goes into the call records. The edge that drives a
``Conference`` reads the wall clock once per input and passes it in.

Admission policy (documented decision, see ``Conference.admit``):

* a conference that was ended admits nobody (``ENDED``); outside a scheduled window nobody gets in
  (``NOT_STARTED`` / ``ENDED``);
* ``max_participants`` counts every leg, moderators included, and is enforced for moderators too
  (it is a capacity/tariff limit, not a courtesy) -> ``FULL``;
* a locked room refuses participants (``LOCKED``) but **admits moderators**: a moderator who
  dials in late must still be able to steer, and only moderators can unlock a room;
* with ``wait_for_moderator`` set, participants arriving before any moderator are admitted into a
  waiting state (``WAIT_FOR_MODERATOR``: they count against capacity, hear hold music and are not
  mixed) and released when the first moderator joins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from bridge.conference import commands as cmd
from bridge.conference import events as ev
from bridge.conference.enums import Admission, Language, LeaveReason, Role

__all__ = [
    "PERMISSIONS",
    "SYSTEM_ACTORS",
    "Admission",
    "Conference",
    "Language",
    "LeaveReason",
    "Leg",
    "Permission",
    "Role",
    "Room",
]


#: Actors that are not legs but act with moderator rights (the web panel, the CLI, the
#: scheduler). Leg ids must never take one of these values.
SYSTEM_ACTORS: frozenset[str] = frozenset({"web", "cli", "scheduler"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Room:
    """Persistent configuration of a conference room (a row of ``rooms``).

    ``starts_at``/``ends_at`` are UTC epoch seconds or ``None``: both ``None`` means the room
    can be used at any time; a set bound restricts admission to the window.
    """

    id: int
    account_id: int
    name: str
    participant_pin: str
    moderator_pin: str
    max_participants: int | None = None
    language: Language = Language.EN
    intro_path: str | None = None
    wait_for_moderator: bool = False
    locked: bool = False  # the lock state a new conference starts with
    starts_at: float | None = None
    ends_at: float | None = None
    created_at: float = 0.0

    def role_for_pin(self, pin: str) -> Role | None:
        """The role a PIN grants in this room, or None."""
        if pin == self.moderator_pin:
            return Role.MODERATOR
        if pin == self.participant_pin:
            return Role.PARTICIPANT
        return None

    def window(self, now: float) -> Admission | None:
        """``NOT_STARTED``/``ENDED`` when ``now`` is outside the schedule, else None."""
        if self.starts_at is not None and now < self.starts_at:
            return Admission.NOT_STARTED
        if self.ends_at is not None and now >= self.ends_at:
            return Admission.ENDED
        return None


@dataclass(slots=True, kw_only=True)
class Leg:
    """One participant's call while it is in a conference (runtime state only).

    ``caller`` is the From URI/number, ``dialed`` the access number (E.164), ``source`` the
    network address the call came from (``"ip:port"``).
    """

    leg_id: str
    role: Role
    language: Language
    joined_at: float
    caller: str = ""
    dialed: str = ""
    source: str = ""
    muted: bool = False
    deaf: bool = False
    waiting: bool = False  # admitted but held until a moderator joins
    call_record_id: int | None = None


class Permission(Enum):
    """Who may issue a command (the rows of ``PERMISSIONS``)."""

    ANYONE = "anyone"  # any leg of the conference, or a system actor
    SELF_OR_MODERATOR = "self_or_moderator"  # a leg about itself, or a moderator about anyone
    MODERATOR = "moderator"  # moderator legs and system actors only


#: The permission table: one row per command type. A command missing here is a bug.
PERMISSIONS: dict[type[cmd.Command], Permission] = {
    cmd.RequestHelp: Permission.ANYONE,
    cmd.QueryParticipantCount: Permission.ANYONE,
    cmd.MuteParticipant: Permission.SELF_OR_MODERATOR,
    cmd.SetDeaf: Permission.SELF_OR_MODERATOR,
    cmd.MuteAllOthers: Permission.MODERATOR,
    cmd.KickParticipant: Permission.MODERATOR,
    cmd.KickLastJoined: Permission.MODERATOR,
    cmd.LockConference: Permission.MODERATOR,
    cmd.UnlockConference: Permission.MODERATOR,
    cmd.ToggleLock: Permission.MODERATOR,
    cmd.EndConference: Permission.MODERATOR,
}


@dataclass(slots=True)
class Conference:
    """Runtime state of one room in use, driven by ``join``/``leave``/``handle``.

    All mutators return the list of events that happened, in order; the caller (IVR, media
    engine, web panel) reacts to those events. Legs are kept in join order.
    """

    room: Room
    locked: bool = False
    ended: bool = False
    legs: dict[str, Leg] = field(default_factory=dict)

    @classmethod
    def open(cls, room: Room) -> Conference:
        """Start the runtime state of ``room`` (lock state from the room's default)."""
        return cls(room=room, locked=room.locked)

    # -- queries -----------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Number of legs in the conference (waiting legs included)."""
        return len(self.legs)

    @property
    def has_moderator(self) -> bool:
        return any(leg.role is Role.MODERATOR for leg in self.legs.values())

    def role_of(self, actor: str) -> Role | None:
        """The role an actor acts with: system actors are moderators; unknown actors None."""
        if actor in SYSTEM_ACTORS:
            return Role.MODERATOR
        leg = self.legs.get(actor)
        return None if leg is None else leg.role

    def admit(self, role: Role, now: float) -> Admission:
        """Decide whether a caller with ``role`` may enter now (see the module docstring)."""
        if self.ended:
            return Admission.ENDED
        outside = self.room.window(now)
        if outside is not None:
            return outside
        limit = self.room.max_participants
        if limit is not None and self.count >= limit:
            return Admission.FULL
        if role is Role.MODERATOR:
            return Admission.ADMITTED
        if self.locked:
            return Admission.LOCKED
        if self.room.wait_for_moderator and not self.has_moderator:
            return Admission.WAIT_FOR_MODERATOR
        return Admission.ADMITTED

    # -- membership --------------------------------------------------------------------------

    def join(self, leg: Leg, now: float) -> list[ev.Event]:
        """Add ``leg`` if ``admit`` lets it in; otherwise return ``[JoinRefused]``.

        Raises ValueError for a programming error (duplicate or reserved leg id).
        """
        if leg.leg_id in SYSTEM_ACTORS:
            raise ValueError(f"leg id {leg.leg_id!r} is reserved for a system actor")
        if leg.leg_id in self.legs:
            raise ValueError(f"leg {leg.leg_id!r} is already in the conference")
        admission = self.admit(leg.role, now)
        if not admission.enters:
            return [ev.JoinRefused(leg=leg.leg_id, role=leg.role, admission=admission, at=now)]
        leg.waiting = admission is Admission.WAIT_FOR_MODERATOR
        self.legs[leg.leg_id] = leg
        out: list[ev.Event] = [
            ev.ParticipantJoined(
                leg=leg.leg_id, role=leg.role, waiting=leg.waiting, count=self.count, at=now
            )
        ]
        if leg.role is Role.MODERATOR:
            released = [w.leg_id for w in self.legs.values() if w.waiting]
            for leg_id in released:
                self.legs[leg_id].waiting = False
            if released:
                out.append(ev.WaitingEnded(legs=tuple(released), by=leg.leg_id, at=now))
        return out

    def leave(self, leg_id: str, reason: LeaveReason, now: float) -> list[ev.Event]:
        """Remove a leg (hangup or interruption). Unknown legs yield no event."""
        leg = self.legs.pop(leg_id, None)
        if leg is None:
            return []
        return [ev.ParticipantLeft(leg=leg_id, reason=reason, count=self.count, at=now)]

    # -- commands ----------------------------------------------------------------------------

    def permitted(self, command: cmd.Command) -> ev.RefusalReason | None:
        """None when ``command.by`` may issue ``command``, else the refusal reason."""
        role = self.role_of(command.by)
        if role is None:
            return ev.RefusalReason.UNKNOWN_ACTOR
        permission = PERMISSIONS[type(command)]
        if permission is Permission.ANYONE or role is Role.MODERATOR:
            return None
        if permission is Permission.SELF_OR_MODERATOR:
            target = getattr(command, "leg", None)
            if target == command.by:
                return None
        return ev.RefusalReason.NOT_MODERATOR

    def handle(self, command: cmd.Command, now: float) -> list[ev.Event]:
        """Apply one command; a forbidden or pointless command yields ``[CommandRefused]``."""
        if self.ended:
            return [self._refuse(command, ev.RefusalReason.CONFERENCE_ENDED)]
        refusal = self.permitted(command)
        if refusal is not None:
            return [self._refuse(command, refusal)]
        match command:
            case cmd.RequestHelp(by=by):
                role = self.role_of(by)
                assert role is not None
                return [ev.HelpRequested(by=by, role=role)]
            case cmd.QueryParticipantCount(by=by):
                return [ev.ParticipantCountReported(by=by, count=self.count)]
            case cmd.MuteParticipant(by=by, leg=target, muted=muted):
                return self._mute(command, target, muted, by)
            case cmd.SetDeaf(by=by, leg=target, deaf=deaf):
                return self._deafen(command, target, deaf, by)
            case cmd.MuteAllOthers(by=by, muted=muted):
                return self._mute_all_others(by, muted)
            case cmd.KickParticipant(by=by, leg=target, announce=announce):
                if target not in self.legs:
                    return [self._refuse(command, ev.RefusalReason.UNKNOWN_LEG)]
                return self._kick(target, by, now, announce=announce)
            case cmd.KickLastJoined(by=by):
                last = [
                    leg.leg_id
                    for leg in self.legs.values()
                    if leg.role is Role.PARTICIPANT and leg.leg_id != by
                ]
                if not last:
                    return [self._refuse(command, ev.RefusalReason.NOTHING_TO_DO)]
                return self._kick(last[-1], by, now)
            case cmd.LockConference(by=by):
                return self._set_lock(command, True, by)
            case cmd.UnlockConference(by=by):
                return self._set_lock(command, False, by)
            case cmd.ToggleLock(by=by):
                return self._set_lock(command, not self.locked, by)
            case cmd.EndConference(by=by):
                return self._end(by, now)
        raise TypeError(f"unhandled command {command!r}")  # pragma: no cover

    # -- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _refuse(command: cmd.Command, reason: ev.RefusalReason) -> ev.CommandRefused:
        return ev.CommandRefused(by=command.by, command=command, reason=reason)

    def _mute(
        self, command: cmd.Command, target: str, muted: bool | None, by: str
    ) -> list[ev.Event]:
        leg = self.legs.get(target)
        if leg is None:
            return [self._refuse(command, ev.RefusalReason.UNKNOWN_LEG)]
        new = (not leg.muted) if muted is None else muted
        if new == leg.muted:
            return [self._refuse(command, ev.RefusalReason.NOTHING_TO_DO)]
        leg.muted = new
        event = ev.ParticipantMuted if new else ev.ParticipantUnmuted
        return [event(leg=target, by=by)]

    def _deafen(
        self, command: cmd.Command, target: str, deaf: bool | None, by: str
    ) -> list[ev.Event]:
        leg = self.legs.get(target)
        if leg is None:
            return [self._refuse(command, ev.RefusalReason.UNKNOWN_LEG)]
        new = (not leg.deaf) if deaf is None else deaf
        if new == leg.deaf:
            return [self._refuse(command, ev.RefusalReason.NOTHING_TO_DO)]
        leg.deaf = new
        event = ev.ParticipantDeafened if new else ev.ParticipantUndeafened
        return [event(leg=target, by=by)]

    def _mute_all_others(self, by: str, muted: bool | None) -> list[ev.Event]:
        """Mute (or unmute) every participant except the issuer; moderators keep their voice.

        Toggle semantics (``muted=None``, the keypad ``*4``): if any other participant is
        unmuted, mute them all; otherwise unmute them all.
        """
        others = [
            leg for leg in self.legs.values() if leg.role is Role.PARTICIPANT and leg.leg_id != by
        ]
        if muted is None:
            muted = any(not leg.muted for leg in others)
        changed = tuple(leg.leg_id for leg in others if leg.muted != muted)
        for leg_id in changed:
            self.legs[leg_id].muted = muted
        if muted:
            return [ev.AllOthersMuted(by=by, legs=changed)]
        return [ev.AllOthersUnmuted(by=by, legs=changed)]

    def _kick(self, target: str, by: str, now: float, *, announce: bool = True) -> list[ev.Event]:
        del self.legs[target]
        return [
            ev.ParticipantLeft(
                leg=target, reason=LeaveReason.KICKED, count=self.count, at=now, by=by,
                announce=announce,
            )
        ]

    def _set_lock(self, command: cmd.Command, locked: bool, by: str) -> list[ev.Event]:
        if self.locked == locked:
            return [self._refuse(command, ev.RefusalReason.NOTHING_TO_DO)]
        self.locked = locked
        return [ev.ConferenceLocked(by=by) if locked else ev.ConferenceUnlocked(by=by)]

    def _end(self, by: str, now: float) -> list[ev.Event]:
        out: list[ev.Event] = []
        for leg_id in list(self.legs):
            del self.legs[leg_id]
            out.append(
                ev.ParticipantLeft(
                    leg=leg_id,
                    reason=LeaveReason.CONFERENCE_ENDED,
                    count=self.count,
                    at=now,
                    by=by,
                )
            )
        self.ended = True
        out.append(ev.ConferenceEnded(by=by, at=now))
        return out
