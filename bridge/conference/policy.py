"""The policy of the conference service: what the bridge does about each domain event.

:func:`decide` is a pure function: the domain events of one step (``Conference.join`` /
``leave`` / ``handle``, or a talking change) and a :class:`Snapshot` of the legs the bridge
knows in, the list of effects (frozen dataclasses) the runtime's controller executes in order.
No I/O, no clock, no asyncio: every time comes from the events.

``P:`` a prompt private to a leg, in the leg's language; ``R:`` a room-wide announcement in
the room's language. Every event is published (:class:`Publish`) after its own effects.

=========================  ===================================================================
ParticipantJoined          the first leg of a conference opens its run (:class:`OpenRun`);
                           not waiting: the join tone privately to every leg already in the
                           conference's media (never the joiner), the leg's media moves in, its
                           record opens with conference time from now; waiting (held for the
                           moderator): its record opens without conference time. A new peak
                           of legs is noted on the run.
WaitingEnded               each held leg: its hold music stops and its media moves in, its IVR
                           is released, its conference time starts (:class:`MarkInConference`)
ParticipantLeft            the leg is detached from the conference, a held IVR is released
                           (False), its record closes with the reason (and who, for a kick or
                           an end); a kick: its IVR is cancelled and its media moves out to its
                           own room, P: ``participant_removed`` to the kicking leg, P:
                           ``you_were_removed`` to the leg then BYE (``announce=False``: BYE at
                           once); a leg that was in the media: the leave tone R (the kicked leg
                           is out already). The last leg leaving ends the run (``last_left``;
                           ``interrupted`` when it was interrupted) and drops the conference.
ParticipantMuted/Unmuted   mute in media; P: ``you_are_muted`` / ``you_are_unmuted`` to it
ParticipantDeafened/...    deafen in media
AllOthersMuted/Unmuted     mute in media each changed leg and P: ``you_are_muted`` /
                           ``you_are_unmuted`` to each; P: ``all_muted`` / ``all_unmuted``
                           to the moderator
ConferenceLocked/Unlocked  R: ``conference_now_locked`` / ``conference_now_unlocked``
HelpRequested              P: ``help_participant`` / ``help_moderator``
ParticipantCountReported   P: ``only_participant`` / ``there_is_one`` / ``there_are`` N
                           ``participants`` (the others, the asker not counted)
CommandRefused             P: ``not_allowed`` when not a moderator (nothing otherwise)
ConferenceEnded            every leg's IVR is cancelled; held legs: their hold music stops, P:
                           ``conference_ended`` then BYE; R: ``conference_ended`` then BYE to
                           the legs in the media; the run ends (``moderator`` for a leg,
                           ``web`` for the web/CLI, ``scheduled_end`` for the scheduler) and
                           the conference is dropped
TalkingStarted/Stopped     published only
=========================  ===================================================================

(The keypad's unknown sequence, P: ``invalid_choice``, is not a domain event: the controller
plays it directly.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from bridge.conference import events as ev
from bridge.conference.enums import Language, LeaveReason, Role
from bridge.media.prompts import COUNT_PROMPTS, HELP_PROMPTS, count_items
from bridge.store.base import RunEnd

__all__ = [
    "PROMPT_IDS",
    "AnnounceThenHangUp",
    "AnnounceToRoom",
    "CancelIvr",
    "CloseRecord",
    "DetachLeg",
    "DropConference",
    "Effect",
    "EndRun",
    "EnterConference",
    "HangUp",
    "LegSnapshot",
    "MarkInConference",
    "MoveOut",
    "NoteRunPeak",
    "OpenRecord",
    "OpenRun",
    "PlayToLeg",
    "PlayTone",
    "Prompt",
    "Publish",
    "ReleaseWaiter",
    "SayThenHangUp",
    "SetDeaf",
    "SetMuted",
    "Snapshot",
    "StopPrompts",
    "Tone",
    "decide",
    "run_end",
]

#: Every prompt the conference's effects can play (``bridge serve`` refuses to start without).
PROMPT_IDS: Final = frozenset(
    {"invalid_choice", "you_are_muted", "you_are_unmuted", "all_muted", "all_unmuted",
     "conference_now_locked", "conference_now_unlocked", "not_allowed", "participant_removed",
     "you_were_removed", "conference_ended"}
) | COUNT_PROMPTS | HELP_PROMPTS

#: A prompt as ids and spoken numbers, e.g. ``("there_are", 5, "participants")``.
Prompt = tuple[str | int, ...]


class Tone(StrEnum):
    JOIN = "join"
    LEAVE = "leave"


# -- the snapshot -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LegSnapshot:
    """A leg the bridge knows, as the step starts."""

    language: Language
    in_media: bool  # its media is in the conference's media room


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """What the policy needs besides the events: the room's language, the legs of the
    conference (and of every leg named by the events) that the bridge has a call for, whether
    the conference's run is open and its peak so far."""

    room_language: Language
    legs: Mapping[str, LegSnapshot]
    run_open: bool
    peak: int


# -- the effects ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Effect:
    """Base of every effect."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish(Effect):
    event: ev.Event


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayToLeg(Effect):
    leg: str
    prompt: Prompt
    language: Language


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayTone(Effect):
    """``tone`` privately to each of ``legs``."""

    tone: Tone
    legs: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceToRoom(Effect):
    """To every leg in the conference's media: a prompt in ``language``, or a tone."""

    prompt: Prompt = ()
    language: Language = Language.EN
    tone: Tone | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetMuted(Effect):
    leg: str
    muted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SetDeaf(Effect):
    leg: str
    deaf: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class EnterConference(Effect):
    """Move the leg's media into the conference (``stop_hold``: stop its hold music first)."""

    leg: str
    stop_hold: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class MoveOut(Effect):
    """Stop the leg's prompts and move its media out to a room of its own."""

    leg: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseWaiter(Effect):
    """Wake the IVR of a held leg: released into the conference (True) or not (False)."""

    leg: str
    released: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DetachLeg(Effect):
    """The leg is no longer in the conference (its keypad goes back to nobody)."""

    leg: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelIvr(Effect):
    leg: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StopPrompts(Effect):
    leg: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SayThenHangUp(Effect):
    """P: ``prompt`` to the leg (to its end, or a grace time), then BYE."""

    leg: str
    prompt: Prompt
    language: Language


@dataclass(frozen=True, slots=True, kw_only=True)
class HangUp(Effect):
    leg: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceThenHangUp(Effect):
    """R: ``prompt``, then BYE to each of ``legs``."""

    prompt: Prompt
    language: Language
    legs: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenRecord(Effect):
    """Open the leg's call record (``conference_at`` None while it is held)."""

    leg: str
    role: Role
    joined_at: float
    conference_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkInConference(Effect):
    leg: str
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseRecord(Effect):
    leg: str
    reason: LeaveReason
    at: float
    ended_by: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenRun(Effect):
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteRunPeak(Effect):
    participants: int


@dataclass(frozen=True, slots=True, kw_only=True)
class EndRun(Effect):
    reason: RunEnd
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class DropConference(Effect):
    """The conference is over: the room can be dialled into again at once."""


# -- the policy -------------------------------------------------------------------------------


def run_end(by: str) -> RunEnd:
    """How a run ended by ``EndConference(by=...)``: a leg is a moderator on the keypad."""
    if by == "scheduler":
        return RunEnd.SCHEDULED_END
    if by in ("web", "cli"):
        return RunEnd.WEB
    return RunEnd.MODERATOR


def decide(events: list[ev.Event], snapshot: Snapshot) -> list[Effect]:
    """The effects of ``events`` (one step of one conference), in the order to execute them."""
    legs = snapshot.legs
    in_media = {leg for leg, s in legs.items() if s.in_media}
    run_open = snapshot.run_open
    peak = snapshot.peak
    ended: list[str] = []  # legs that left because the conference ended
    out: list[Effect] = []
    room_lang = snapshot.room_language

    def say(leg: str, *prompt: str | int) -> None:
        known = legs.get(leg)
        if known is not None:
            out.append(PlayToLeg(leg=leg, prompt=prompt, language=known.language))

    for event in events:
        match event:
            case ev.ParticipantJoined(leg=leg, role=role, waiting=waiting, count=count, at=at):
                if not run_open:
                    out.append(OpenRun(at=at))
                    run_open = True
                if not waiting and leg in legs:
                    out.append(PlayTone(tone=Tone.JOIN, legs=tuple(sorted(in_media))))
                    out.append(EnterConference(leg=leg, stop_hold=False))
                    in_media.add(leg)
                if leg in legs:
                    out.append(OpenRecord(leg=leg, role=role, joined_at=at,
                                          conference_at=None if waiting else at))
                if count > peak:
                    out.append(NoteRunPeak(participants=count))
                    peak = count
            case ev.WaitingEnded(legs=released, at=at):
                for leg in released:
                    if leg not in legs:
                        continue
                    out.append(EnterConference(leg=leg, stop_hold=True))
                    in_media.add(leg)
                    out.append(ReleaseWaiter(leg=leg, released=True))
                    out.append(MarkInConference(leg=leg, at=at))
            case ev.ParticipantLeft(leg=leg, reason=reason, count=count, at=at, by=by,
                                    announce=announce):
                was_in_media = leg in in_media
                if leg in legs:
                    out.append(DetachLeg(leg=leg))
                    out.append(ReleaseWaiter(leg=leg, released=False))
                    ended_by = by if reason in (LeaveReason.KICKED,
                                                LeaveReason.CONFERENCE_ENDED) else None
                    out.append(CloseRecord(leg=leg, reason=reason, at=at, ended_by=ended_by))
                if reason is LeaveReason.CONFERENCE_ENDED:
                    if leg in legs:
                        ended.append(leg)
                    out.append(Publish(event=event))
                    continue
                if reason is LeaveReason.KICKED and leg in legs:
                    out.append(CancelIvr(leg=leg))
                    out.append(MoveOut(leg=leg))
                    in_media.discard(leg)
                    if by is not None and by != leg:
                        say(by, "participant_removed")
                    if announce:
                        out.append(SayThenHangUp(leg=leg, prompt=("you_were_removed",),
                                                 language=legs[leg].language))
                    else:
                        out.append(HangUp(leg=leg))
                in_media.discard(leg)
                if was_in_media:
                    out.append(AnnounceToRoom(tone=Tone.LEAVE))
                if count == 0:
                    out.append(Publish(event=event))
                    out.append(EndRun(reason=RunEnd.INTERRUPTED
                                      if reason is LeaveReason.INTERRUPTED
                                      else RunEnd.LAST_LEFT, at=at))
                    out.append(DropConference())
                    continue
            case ev.ParticipantMuted(leg=leg) | ev.ParticipantUnmuted(leg=leg):
                muted = isinstance(event, ev.ParticipantMuted)
                out.append(SetMuted(leg=leg, muted=muted))
                say(leg, "you_are_muted" if muted else "you_are_unmuted")
            case ev.ParticipantDeafened(leg=leg) | ev.ParticipantUndeafened(leg=leg):
                out.append(SetDeaf(leg=leg, deaf=isinstance(event, ev.ParticipantDeafened)))
            case ev.AllOthersMuted(by=by, legs=changed) | ev.AllOthersUnmuted(by=by, legs=changed):
                muted = isinstance(event, ev.AllOthersMuted)
                for leg in changed:
                    out.append(SetMuted(leg=leg, muted=muted))
                    say(leg, "you_are_muted" if muted else "you_are_unmuted")
                say(by, "all_muted" if muted else "all_unmuted")
            case ev.ConferenceLocked() | ev.ConferenceUnlocked():
                locked = isinstance(event, ev.ConferenceLocked)
                out.append(AnnounceToRoom(
                    prompt=("conference_now_locked" if locked else "conference_now_unlocked",),
                    language=room_lang))
            case ev.HelpRequested(by=by, role=role):
                say(by, "help_moderator" if role is Role.MODERATOR else "help_participant")
            case ev.ParticipantCountReported(by=by, count=count):
                say(by, *count_items(max(0, count - 1), joining=False))
            case ev.CommandRefused(by=by, reason=ev.RefusalReason.NOT_MODERATOR):
                say(by, "not_allowed")
            case ev.ConferenceEnded(by=by, at=at):
                held = [leg for leg in ended if leg not in in_media]
                media = tuple(leg for leg in ended if leg in in_media)
                for leg in ended:
                    out.append(CancelIvr(leg=leg))
                for leg in held:
                    out.append(StopPrompts(leg=leg))
                    out.append(SayThenHangUp(leg=leg, prompt=("conference_ended",),
                                             language=legs[leg].language))
                out.append(AnnounceThenHangUp(prompt=("conference_ended",), language=room_lang,
                                              legs=media))
                in_media.clear()
                out.append(Publish(event=event))
                out.append(EndRun(reason=run_end(by), at=at))
                out.append(DropConference())
                continue
            case _:
                pass
        out.append(Publish(event=event))
    return out
