"""The live conference service with media workers on (``[media] workers = 2``): the controller
stays in the main process, so ``live()`` sees rooms whose media run in a worker, and ``execute``
mutes and kicks there. What the moderator hears is checked on the audio it received; talking
comes from the worker's VAD.
"""

from __future__ import annotations

import asyncio

import numpy as np

from bridge.codecs.g711 import Codec
from bridge.conference import commands as cmd
from bridge.conference import events as ev
from bridge.conference.enums import LeaveReason
from bridge.service.live import LegState
from tests.integration import test_conference_dialin as dialin
from tests.integration import test_media_workers as workers
from tests.integration.confclient import until
from tests.integration.test_conference_dialin import _closed, eventually
from tests.integration.test_live_service import Collector, _by_caller
from tests.integration.test_media_workers import Rig, stream_tone
from tests.interop.audio import tone_levels

rig = workers.rig  # the fixtures of the media worker tests
short_prompts = dialin.short_prompts
MODERATOR, TALKER = "+4915100000501", "+4915100000502"
TONE = 770.0


def _level(rig: Rig) -> float:
    """The median level of the talker's tone in what the moderator heard since the mark."""
    pcm = rig.heard[MODERATOR].audio(Codec.PCMU)
    return float(np.median(tone_levels(pcm, [TONE]), axis=0)[0])


def _quiet_since(rig: Rig, start: int) -> bool:
    """The last second the moderator heard (all of it after ``start``) lacks the tone."""
    heard = rig.heard[MODERATOR]
    if len(heard.packets) - start < 50:
        return False
    heard.mark = len(heard.packets) - 50
    return _level(rig) < -50.0


async def _a_second_of_audio(rig: Rig) -> None:
    heard = rig.heard[MODERATOR]
    heard.mark = len(heard.packets)
    await until(lambda: len(heard.packets) - heard.mark >= 50, "a second of audio")


async def test_execute_mutes_and_kicks_in_a_worker_room(rig: Rig) -> None:
    service = rig.controller
    events = Collector(service.subscribe())
    room_id = rig.rooms["r1"]
    await rig.join("r1", MODERATOR, moderator=True)
    talker = await rig.join("r1", TALKER)
    leg = rig.leg_of(TALKER)
    assert rig.pool.worker_of(leg) is not None  # the media run in a worker process
    view = service.conference(room_id)
    assert view is not None and [v.room_id for v in service.live()] == [room_id]
    assert {p.state for p in view.participants} == {LegState.IN_CONFERENCE}

    stop = asyncio.Event()
    sender = asyncio.create_task(stream_tone(talker, TONE, stop))
    try:
        await events.wait_for("talking (the worker's VAD)",
                              lambda e: e == ev.TalkingStarted(leg=leg))
        await _a_second_of_audio(rig)
        assert _level(rig) > -30.0  # the moderator hears the talker

        [muted] = service.execute(room_id, cmd.MuteParticipant(by="web", leg=leg, muted=True))
        assert muted == ev.ParticipantMuted(leg=leg, by="web")
        view = service.conference(room_id)
        assert view is not None and _by_caller(view.participants, TALKER).muted
        # muted in the worker's mixer: a second of audio after the mute without the tone
        start = len(rig.heard[MODERATOR].packets)
        await until(lambda: _quiet_since(rig, start), "the talker silenced for the moderator")

        service.execute(room_id, cmd.KickParticipant(by="web", leg=leg, announce=False))
        assert (await talker.wait_ended(timeout=10.0)).reason == "remote_bye"
    finally:
        stop.set()
        await sender
    [record] = await eventually(lambda: _closed(rig.records(TALKER)), "record closed")
    assert (record.leave_reason, record.ended_by) == (LeaveReason.KICKED, "web")
    view = service.conference(room_id)
    assert view is not None and [p.caller for p in view.participants] == [MODERATOR]
    await events.close()
