"""The live conference service (bridge.service.live) on a real bridge: the ConferenceController
of a BridgeApp on 127.0.0.1, a real SQLite file and test phones (SIP over UDP, RTP with G.711
audio and RFC 4733 digits). The web and CLI actors act through ``execute`` exactly like the
keypad; every domain event reaches the subscribers in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from bridge.conference import commands as cmd
from bridge.conference import events as ev
from bridge.conference.enums import Language, LeaveReason, Role
from bridge.service.live import (
    LegState,
    NoLiveConference,
    ParticipantView,
    RoomEvent,
    Subscription,
)
from bridge.store.base import Direction
from tests.integration import test_conference_dialin as dialin
from tests.integration.confclient import until
from tests.integration.test_conference_dialin import Rig, _closed, eventually
from tests.integration.test_media_workers import stream_tone

rig = dialin.rig  # the fixtures of the dial-in tests
short_prompts = dialin.short_prompts


class Collector:
    """Reads a subscription into a list in the background."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.events: list[RoomEvent] = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        async for event in self.sub:
            self.events.append(event)

    def of(self, kind: type[ev.Event]) -> list[RoomEvent]:
        return [e for e in self.events if isinstance(e.event, kind)]

    async def wait_for(self, what: str, predicate: Callable[[ev.Event], bool]) -> RoomEvent:
        await until(lambda: any(predicate(e.event) for e in self.events), what)
        return next(e for e in self.events if predicate(e.event))

    async def close(self) -> None:
        self.sub.close()
        await asyncio.wait_for(self.task, 5)


def _by_caller(participants: tuple[ParticipantView, ...], caller: str) -> ParticipantView:
    [found] = [p for p in participants if p.caller == caller]
    return found


async def test_the_service_lists_the_participants_and_web_commands_act_on_them(
        rig: Rig) -> None:
    service = rig.controller
    events = Collector(service.subscribe())
    room_id = rig.rooms["r1"]
    with pytest.raises(NoLiveConference):
        service.execute(room_id, cmd.LockConference(by="web"))
    assert service.conference(room_id) is None and service.live() == []

    await rig.join("r1", "+4915100000201", moderator=True)
    other = await rig.join("r1", "+4915100000202")
    view = service.conference(room_id)
    assert view is not None
    assert view.room_name == "r1" and not view.locked and view.opened_at > 0
    moderator = _by_caller(view.participants, "+4915100000201")
    participant = _by_caller(view.participants, "+4915100000202")
    assert (moderator.role, participant.role) == (Role.MODERATOR, Role.PARTICIPANT)
    for p in (moderator, participant):
        assert p.state is LegState.IN_CONFERENCE and p.direction is Direction.DIAL_IN
        assert p.language is Language.EN and not p.muted and not p.talking
        assert p.number_dialed == "+493012345678"
    assert [v.room_id for v in service.live(view.account_id)] == [room_id]
    assert service.live(view.account_id + 1) == []
    assert [v.room_id for v in service.live()] == [room_id]

    # a participant may not lock: the same refusal as on the keypad
    [refused] = service.execute(room_id, cmd.LockConference(by=participant.id))
    assert isinstance(refused, ev.CommandRefused)
    assert refused.reason is ev.RefusalReason.NOT_MODERATOR

    [muted] = service.execute(room_id, cmd.MuteParticipant(by="web", leg=participant.id,
                                                           muted=True))
    assert muted == ev.ParticipantMuted(leg=participant.id, by="web")
    assert rig.app.media.engine._legs[participant.id].muted  # the mixer leaves it out
    view = service.conference(room_id)
    assert view is not None and _by_caller(view.participants, "+4915100000202").muted

    [locked] = service.execute(room_id, cmd.LockConference(by="cli"))
    assert isinstance(locked, ev.ConferenceLocked)
    view = service.conference(room_id)
    assert view is not None and view.locked

    # a kick without the announcement ends the call at once with a BYE
    [left] = service.execute(room_id, cmd.KickParticipant(by="web", leg=participant.id,
                                                          announce=False))
    assert isinstance(left, ev.ParticipantLeft) and left.reason is LeaveReason.KICKED
    assert left.by == "web" and not left.announce
    assert (await other.wait_ended(timeout=10.0)).reason == "remote_bye"
    [record] = await eventually(lambda: _closed(rig.records("+4915100000202")), "closed")
    assert record.leave_reason is LeaveReason.KICKED

    # the subscriber saw every event, numbered in order
    await until(lambda: len(events.of(ev.ParticipantLeft)) == 1, "the kick published")
    kinds = [type(e.event) for e in events.events]
    assert kinds == [ev.ParticipantJoined, ev.ParticipantJoined, ev.CommandRefused,
                     ev.ParticipantMuted, ev.ConferenceLocked, ev.ParticipantLeft]
    seqs = [e.seq for e in events.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert {(e.room_id, e.account_id) for e in events.events} == {(room_id, view.account_id)}
    await events.close()


async def test_the_keypad_goes_through_execute_and_talking_is_published(rig: Rig) -> None:
    service = rig.controller
    events = Collector(service.subscribe())
    room_id = rig.rooms["r1"]
    await rig.join("r1", "+4915100000211", moderator=True)
    talker = await rig.join("r1", "+4915100000212")
    leg = rig.leg_of("+4915100000212")
    assert leg is not None

    await talker.send_digits("*1")  # mute oneself
    await events.wait_for("muted by the keypad", lambda e: isinstance(e, ev.ParticipantMuted))
    [muted] = events.of(ev.ParticipantMuted)
    assert muted.event == ev.ParticipantMuted(leg=leg, by=leg)
    await talker.send_digits("*1")
    await events.wait_for("unmuted", lambda e: isinstance(e, ev.ParticipantUnmuted))

    stop = asyncio.Event()
    sender = asyncio.create_task(stream_tone(talker, 440.0, stop))
    try:
        await events.wait_for("talking", lambda e: e == ev.TalkingStarted(leg=leg))
        view = service.conference(room_id)
        assert view is not None
        assert _by_caller(view.participants, "+4915100000212").talking
    finally:
        stop.set()
        await sender
    await events.wait_for("stopped talking", lambda e: e == ev.TalkingStopped(leg=leg))
    view = service.conference(room_id)
    assert view is not None and not _by_caller(view.participants, "+4915100000212").talking

    talker.hang_up()
    await events.wait_for("left", lambda e: isinstance(e, ev.ParticipantLeft))
    order = [type(e.event) for e in events.events]
    assert order.index(ev.TalkingStarted) < order.index(ev.TalkingStopped) \
        < order.index(ev.ParticipantLeft)
    await events.close()


async def test_end_by_the_web_ends_the_conference_for_everyone(rig: Rig) -> None:
    service = rig.controller
    room_id = rig.rooms["r2"]
    calls = [await rig.join("r2", "+4915100000221"),
             await rig.join("r2", "+4915100000222", moderator=True)]
    out = service.execute(room_id, cmd.EndConference(by="web"))
    assert isinstance(out[-1], ev.ConferenceEnded) and out[-1].by == "web"
    for call in calls:
        assert (await call.wait_ended()).reason == "remote_bye"
    assert service.conference(room_id) is None
    with pytest.raises(NoLiveConference):
        service.execute(room_id, cmd.EndConference(by="web"))
