"""Conference runs and the call records' bookkeeping on a real bridge (ConferenceController in a
BridgeApp on 127.0.0.1, a real SQLite file, test phones over SIP/RTP): a run opens with the
first leg, notes its peak and ends the right way; every record carries its run, direction,
answer time, conference time (None while held for the moderator) and who kicked or ended it.
"""

from __future__ import annotations

from bridge.conference import commands as cmd
from bridge.conference.enums import LeaveReason
from bridge.store.base import CallRecord, Direction, Run, RunEnd
from tests.integration import test_conference_dialin as dialin
from tests.integration.confclient import until
from tests.integration.test_conference_dialin import NUMBER, PINS, Rig, _closed, eventually

rig = dialin.rig  # the fixtures of the dial-in tests
short_prompts = dialin.short_prompts


async def _runs(rig: Rig, room: str) -> list[Run]:
    return await rig.store.list_runs(room_id=rig.rooms[room])


async def _ended_runs(rig: Rig, room: str, count: int = 1) -> list[Run]:
    ended = [r for r in await _runs(rig, room) if r.ended_at is not None]
    return ended if len(ended) >= count else []


async def _record(rig: Rig, caller: str) -> CallRecord:
    [record] = await rig.records(caller)
    return record


async def test_a_run_opens_with_the_first_leg_notes_the_peak_and_ends_when_the_last_leaves(
        rig: Rig) -> None:
    a = await rig.join("r1", "+4915100000401")
    b = await rig.join("r1", "+4915100000402", moderator=True)
    [run] = await _runs(rig, "r1")
    assert run.ended_at is None and run.room_id == rig.rooms["r1"]
    assert run.node_id == "test-node"
    view = rig.controller.conference(rig.rooms["r1"])
    assert view is not None and view.run_id == run.id
    for caller in ("+4915100000401", "+4915100000402"):
        record = await _record(rig, caller)
        assert record.run_id == run.id and record.direction is Direction.DIAL_IN
        assert record.answered_at is not None
        assert record.answered_at <= record.joined_at  # the IVR ran in between
        assert record.conference_at == record.joined_at  # no waiting in this room
    a.hang_up()
    b.hang_up()
    [ended] = await eventually(lambda: _ended_runs(rig, "r1"), "the run ended")
    assert ended.id == run.id and ended.end_reason is RunEnd.LAST_LEFT
    assert ended.peak_participants == 2
    assert ended.ended_at is not None and ended.ended_at >= ended.opened_at
    records = await eventually(lambda: _closed(rig.store.call_history(run_id=run.id), 2),
                               "both records closed")
    assert {r.leave_reason for r in records} == {LeaveReason.HANGUP}
    assert {r.ended_by for r in records} == {None}

    # the room used again is a new run
    c = await rig.join("r1", "+4915100000403")
    runs = await _runs(rig, "r1")
    assert len(runs) == 2 and runs[0].id != run.id and runs[0].ended_at is None
    assert (await _record(rig, "+4915100000403")).run_id == runs[0].id
    c.hang_up()


async def test_held_legs_count_conference_time_from_the_moderators_arrival_and_star7(
        rig: Rig) -> None:
    caller = "+4915100000411"
    held = await rig.phone.dial(NUMBER, caller)
    await held.wait_answered()
    await held.send_digits("2" + PINS["r4"][0] + "#")
    record = (await eventually(lambda: rig.records(caller), "the held leg's record"))[0]
    assert record.conference_at is None and record.run_id is not None
    moderator = await rig.join("r4", "+4915100000412", moderator=True)
    await until(lambda: rig.in_room(caller), "released into the conference")

    async def marked() -> list[CallRecord]:
        return [r for r in await rig.records(caller) if r.conference_at is not None]

    [record] = await eventually(marked, "conference time started")
    assert record.conference_at is not None and record.conference_at > record.joined_at
    moderator_leg = rig.leg_of("+4915100000412")

    await moderator.send_digits("*7")
    for call in (held, moderator):
        assert (await call.wait_ended()).reason == "remote_bye"
    [run] = await eventually(lambda: _ended_runs(rig, "r4"), "the run ended")
    assert run.end_reason is RunEnd.MODERATOR and run.peak_participants == 2
    records = await eventually(lambda: _closed(rig.store.call_history(run_id=run.id), 2),
                               "records closed")
    assert {(r.leave_reason, r.ended_by) for r in records} == {
        (LeaveReason.CONFERENCE_ENDED, moderator_leg)}


async def test_a_web_kick_and_a_cli_end_are_on_the_records_and_the_run(rig: Rig) -> None:
    room_id = rig.rooms["r2"]
    await rig.join("r2", "+4915100000421", moderator=True)
    kicked = await rig.join("r2", "+4915100000422")
    await rig.join("r2", "+4915100000423")
    leg = rig.leg_of("+4915100000422")
    assert leg is not None
    rig.controller.execute(room_id, cmd.KickParticipant(by="web", leg=leg))
    assert (await kicked.wait_ended()).reason == "remote_bye"
    [record] = await eventually(lambda: _closed(rig.records("+4915100000422")), "closed")
    assert (record.leave_reason, record.ended_by) == (LeaveReason.KICKED, "web")

    rig.controller.execute(room_id, cmd.EndConference(by="cli"))
    [run] = await eventually(lambda: _ended_runs(rig, "r2"), "the run ended")
    assert run.end_reason is RunEnd.WEB and run.peak_participants == 3
    records = await eventually(lambda: _closed(rig.store.call_history(run_id=run.id), 3),
                               "all closed")
    assert sorted((r.leave_reason.value if r.leave_reason else "", r.ended_by or "")
                  for r in records) == [("conference_ended", "cli"), ("conference_ended", "cli"),
                                        ("kicked", "web")]
