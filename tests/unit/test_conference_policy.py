"""The conference policy as a pure function (no asyncio, no media, no store): each row of the
effects table in ``bridge.conference.policy``'s docstring, with events made by the real domain
model where the model makes them."""

from __future__ import annotations

from dataclasses import replace

from bridge.conference import commands as cmd
from bridge.conference import events as ev
from bridge.conference import policy as p
from bridge.conference.enums import Language, LeaveReason, Role
from bridge.conference.model import Conference, Leg, Room
from bridge.store.base import RunEnd

DE, EN, FR = Language.DE, Language.EN, Language.FR
ROOM = Room(id=1, account_id=1, name="r", participant_pin="1111", moderator_pin="2222",
            language=FR)


def snap(*in_media: str, waiting: tuple[str, ...] = (), run_open: bool = True, peak: int = 0,
         lang: dict[str, Language] | None = None) -> p.Snapshot:
    langs = lang or {}
    legs = {leg: p.LegSnapshot(language=langs.get(leg, EN), in_media=True) for leg in in_media}
    legs |= {leg: p.LegSnapshot(language=langs.get(leg, EN), in_media=False) for leg in waiting}
    return p.Snapshot(room_language=FR, legs=legs, run_open=run_open, peak=peak)


def conference(*legs: tuple[str, Role], wait: bool = False) -> Conference:
    c = Conference.open(replace(ROOM, wait_for_moderator=wait))
    for leg_id, role in legs:
        c.join(Leg(leg_id=leg_id, role=role, language=EN, joined_at=1.0), 1.0)
    return c


def without_publish(effects: list[p.Effect]) -> list[p.Effect]:
    return [e for e in effects if not isinstance(e, p.Publish)]


def test_every_event_is_published_after_its_own_effects() -> None:
    c = conference(("m", Role.MODERATOR), ("a", Role.PARTICIPANT))
    events = c.handle(cmd.MuteParticipant(by="m", leg="a", muted=True), 2.0)
    effects = p.decide(events, snap("m", "a"))
    assert effects == [p.SetMuted(leg="a", muted=True),
                       p.PlayToLeg(leg="a", prompt=("you_are_muted",), language=EN),
                       p.Publish(event=events[0])]
    assert p.decide([ev.TalkingStarted(leg="a")], snap("a")) == [
        p.Publish(event=ev.TalkingStarted(leg="a"))]


def test_the_first_join_opens_the_run_tone_to_the_others_media_in_and_record() -> None:
    first = ev.ParticipantJoined(leg="a", role=Role.PARTICIPANT, waiting=False, count=1, at=5.0)
    effects = without_publish(p.decide([first], snap(waiting=("a",), run_open=False)))
    assert effects == [
        p.OpenRun(at=5.0),
        p.PlayTone(tone=p.Tone.JOIN, legs=()),
        p.EnterConference(leg="a", stop_hold=False),
        p.OpenRecord(leg="a", role=Role.PARTICIPANT, joined_at=5.0, conference_at=5.0),
        p.NoteRunPeak(participants=1),
    ]
    second = ev.ParticipantJoined(leg="b", role=Role.MODERATOR, waiting=False, count=2, at=6.0)
    effects = without_publish(p.decide([second], snap("a", "c", waiting=("b",), peak=3)))
    assert effects == [  # the joiner never hears its own tone; no new peak
        p.PlayTone(tone=p.Tone.JOIN, legs=("a", "c")),
        p.EnterConference(leg="b", stop_hold=False),
        p.OpenRecord(leg="b", role=Role.MODERATOR, joined_at=6.0, conference_at=6.0),
    ]


def test_a_held_leg_gets_a_record_without_conference_time_until_the_moderator() -> None:
    c = conference(wait=True)
    held = c.join(Leg(leg_id="a", role=Role.PARTICIPANT, language=EN, joined_at=1.0), 1.0)
    assert without_publish(p.decide(held, snap(waiting=("a",), run_open=False))) == [
        p.OpenRun(at=1.0),
        p.OpenRecord(leg="a", role=Role.PARTICIPANT, joined_at=1.0, conference_at=None),
        p.NoteRunPeak(participants=1),
    ]
    arrives = c.join(Leg(leg_id="m", role=Role.MODERATOR, language=EN, joined_at=3.0), 3.0)
    assert [type(e) for e in arrives] == [ev.ParticipantJoined, ev.WaitingEnded]
    effects = without_publish(p.decide(arrives, snap(waiting=("a", "m"), peak=1)))
    assert effects == [
        p.PlayTone(tone=p.Tone.JOIN, legs=()),
        p.EnterConference(leg="m", stop_hold=False),
        p.OpenRecord(leg="m", role=Role.MODERATOR, joined_at=3.0, conference_at=3.0),
        p.NoteRunPeak(participants=2),
        p.EnterConference(leg="a", stop_hold=True),
        p.ReleaseWaiter(leg="a", released=True),
        p.MarkInConference(leg="a", at=3.0),
    ]


def test_a_hangup_closes_the_record_and_the_leave_tone_plays_to_the_room() -> None:
    c = conference(("a", Role.PARTICIPANT), ("b", Role.PARTICIPANT))
    events = c.leave("a", LeaveReason.HANGUP, 9.0)
    assert without_publish(p.decide(events, snap("a", "b"))) == [
        p.DetachLeg(leg="a"),
        p.ReleaseWaiter(leg="a", released=False),
        p.CloseRecord(leg="a", reason=LeaveReason.HANGUP, at=9.0, ended_by=None),
        p.AnnounceToRoom(tone=p.Tone.LEAVE),
    ]


def test_the_last_leg_leaving_ends_the_run_and_drops_the_conference() -> None:
    c = conference(("a", Role.PARTICIPANT))
    events = c.leave("a", LeaveReason.HANGUP, 9.0)
    effects = p.decide(events, snap("a"))
    assert effects[-3:] == [p.Publish(event=events[0]),
                            p.EndRun(reason=RunEnd.LAST_LEFT, at=9.0), p.DropConference()]
    c = conference(("a", Role.PARTICIPANT))
    events = c.leave("a", LeaveReason.INTERRUPTED, 9.0)  # shutdown, lost ACK ...
    assert p.EndRun(reason=RunEnd.INTERRUPTED, at=9.0) in p.decide(events, snap("a"))


def test_a_kick_moves_the_leg_out_tells_both_and_hangs_up() -> None:
    c = conference(("m", Role.MODERATOR), ("a", Role.PARTICIPANT), ("b", Role.PARTICIPANT))
    events = c.handle(cmd.KickParticipant(by="m", leg="a"), 4.0)
    assert without_publish(p.decide(events, snap("m", "a", "b", lang={"a": DE}))) == [
        p.DetachLeg(leg="a"),
        p.ReleaseWaiter(leg="a", released=False),
        p.CloseRecord(leg="a", reason=LeaveReason.KICKED, at=4.0, ended_by="m"),
        p.CancelIvr(leg="a"),
        p.MoveOut(leg="a"),
        p.PlayToLeg(leg="m", prompt=("participant_removed",), language=EN),
        p.SayThenHangUp(leg="a", prompt=("you_were_removed",), language=DE),
        p.AnnounceToRoom(tone=p.Tone.LEAVE),  # after the move: the kicked leg does not hear it
    ]


def test_a_web_kick_without_announcement_hangs_up_at_once() -> None:
    c = conference(("m", Role.MODERATOR), ("a", Role.PARTICIPANT))
    events = c.handle(cmd.KickParticipant(by="web", leg="a", announce=False), 4.0)
    effects = without_publish(p.decide(events, snap("m", "a")))
    assert p.CloseRecord(leg="a", reason=LeaveReason.KICKED, at=4.0, ended_by="web") in effects
    assert p.HangUp(leg="a") in effects
    assert not [e for e in effects if isinstance(e, p.SayThenHangUp | p.PlayToLeg)]


def test_mute_all_others_and_deafen() -> None:
    c = conference(("m", Role.MODERATOR), ("a", Role.PARTICIPANT), ("b", Role.PARTICIPANT))
    events = c.handle(cmd.MuteAllOthers(by="m"), 2.0)
    assert without_publish(p.decide(events, snap("m", "a", "b", lang={"b": FR}))) == [
        p.SetMuted(leg="a", muted=True),
        p.PlayToLeg(leg="a", prompt=("you_are_muted",), language=EN),
        p.SetMuted(leg="b", muted=True),
        p.PlayToLeg(leg="b", prompt=("you_are_muted",), language=FR),
        p.PlayToLeg(leg="m", prompt=("all_muted",), language=EN),
    ]
    events = c.handle(cmd.MuteAllOthers(by="web", muted=False), 3.0)
    effects = without_publish(p.decide(events, snap("m", "a", "b")))
    assert effects[-1] == p.PlayToLeg(leg="b", prompt=("you_are_unmuted",), language=EN)
    events = c.handle(cmd.SetDeaf(by="a", leg="a"), 4.0)
    assert without_publish(p.decide(events, snap("m", "a", "b"))) == [
        p.SetDeaf(leg="a", deaf=True)]


def test_lock_help_count_and_refusal_prompts() -> None:
    c = conference(("m", Role.MODERATOR), ("a", Role.PARTICIPANT), ("b", Role.PARTICIPANT))
    s = snap("m", "a", "b", lang={"a": DE})
    lock = c.handle(cmd.ToggleLock(by="m"), 1.0)
    assert without_publish(p.decide(lock, s)) == [
        p.AnnounceToRoom(prompt=("conference_now_locked",), language=FR)]  # the room's
    unlock = c.handle(cmd.UnlockConference(by="cli"), 1.0)
    assert without_publish(p.decide(unlock, s)) == [
        p.AnnounceToRoom(prompt=("conference_now_unlocked",), language=FR)]
    assert without_publish(p.decide(c.handle(cmd.RequestHelp(by="m"), 1.0), s)) == [
        p.PlayToLeg(leg="m", prompt=("help_moderator",), language=EN)]
    assert without_publish(p.decide(c.handle(cmd.RequestHelp(by="a"), 1.0), s)) == [
        p.PlayToLeg(leg="a", prompt=("help_participant",), language=DE)]
    count = c.handle(cmd.QueryParticipantCount(by="a"), 1.0)
    assert without_publish(p.decide(count, s)) == [
        p.PlayToLeg(leg="a", prompt=("there_are", 2, "participants"), language=DE)]
    refused = c.handle(cmd.LockConference(by="a"), 1.0)
    assert without_publish(p.decide(refused, s)) == [
        p.PlayToLeg(leg="a", prompt=("not_allowed",), language=DE)]
    pointless = c.handle(cmd.UnlockConference(by="m"), 1.0)  # nothing to do: silent
    assert without_publish(p.decide(pointless, s)) == []
    web_refused = c.handle(cmd.MuteParticipant(by="web", leg="nobody"), 1.0)
    assert without_publish(p.decide(web_refused, s)) == []  # no leg to play to


def test_the_only_participant_asking_hears_so() -> None:
    c = conference(("a", Role.PARTICIPANT))
    events = c.handle(cmd.QueryParticipantCount(by="a"), 1.0)
    assert without_publish(p.decide(events, snap("a"))) == [
        p.PlayToLeg(leg="a", prompt=("only_participant",), language=EN)]


def test_the_end_announces_hangs_up_everyone_and_ends_the_run() -> None:
    c = conference(("m", Role.MODERATOR), ("a", Role.PARTICIPANT), ("h", Role.PARTICIPANT))
    events = c.handle(cmd.EndConference(by="m"), 7.0)
    effects = without_publish(p.decide(events, snap("m", "a", waiting=("h",), lang={"h": DE})))
    closes = [e for e in effects if isinstance(e, p.CloseRecord)]
    assert closes == [p.CloseRecord(leg=leg, reason=LeaveReason.CONFERENCE_ENDED, at=7.0,
                                    ended_by="m") for leg in ("m", "a", "h")]
    tail = effects[len(effects) - 8:]
    assert tail == [
        p.CancelIvr(leg="m"), p.CancelIvr(leg="a"), p.CancelIvr(leg="h"),
        p.StopPrompts(leg="h"),
        p.SayThenHangUp(leg="h", prompt=("conference_ended",), language=DE),
        p.AnnounceThenHangUp(prompt=("conference_ended",), language=FR, legs=("m", "a")),
        p.EndRun(reason=RunEnd.MODERATOR, at=7.0),
        p.DropConference(),
    ]
    assert not [e for e in effects if isinstance(e, p.AnnounceToRoom)]  # no leave tones


def test_who_ended_the_run() -> None:
    assert p.run_end("leg-1") is RunEnd.MODERATOR
    assert p.run_end("web") is RunEnd.WEB and p.run_end("cli") is RunEnd.WEB
    assert p.run_end("scheduler") is RunEnd.SCHEDULED_END
    c = conference(("m", Role.MODERATOR))
    effects = p.decide(c.handle(cmd.EndConference(by="web"), 7.0), snap("m"))
    assert p.EndRun(reason=RunEnd.WEB, at=7.0) in effects
    assert p.CloseRecord(leg="m", reason=LeaveReason.CONFERENCE_ENDED, at=7.0,
                         ended_by="web") in effects


def test_events_for_legs_the_bridge_does_not_know_play_nothing() -> None:
    c = conference(("m", Role.MODERATOR), ("a", Role.PARTICIPANT))
    events = c.leave("a", LeaveReason.HANGUP, 2.0)
    assert without_publish(p.decide(events, snap("m"))) == []  # "a" has no call any more

