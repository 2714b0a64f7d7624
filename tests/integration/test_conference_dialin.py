"""Dial-in conferences end to end on 127.0.0.1: a real BridgeApp with the ConferenceController,
a real SQLite file, and test phones (SIP over UDP, RFC 4733 digits over RTP).

The prompts are short generated stand-ins (0.1 s each, same ids and layout as bridge/prompts/),
so a call gets through the IVR in about a second; what the caller hears is checked in the
unit tests of the script. Every wait is for an observable state with a generous timeout.
"""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from bridge.conference.enums import Language, LeaveReason, Role
from bridge.config import Config, RtpConfig, SipConfig
from bridge.ivr.flows import IvrTimers
from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig
from bridge.runtime.prompt_files import load_prompts
from bridge.store.base import CallRecord, Rejection, RejectionReason
from bridge.store.sqlite import SqliteStore
from tests.conftest import LOOPBACK, free_port, rtp_port_block
from tests.integration.confclient import Phone, PhoneCall, until

T = TypeVar("T")
NUMBER = "+493012345678"
BOUND_NUMBER = "+493087654321"  # bound to room 2
PINS = {
    "r1": ("48193726", "59284617"),
    "r2": ("73619482", "86150394"),
    "r3": ("24681357", "97531864"),
    "r4": ("35792468", "64820571"),  # waits for the moderator
}


@pytest.fixture(scope="module")
def short_prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every prompt of bridge/prompts/ as a 0.1 s 8 kHz clip (a different tone per file)."""
    root = tmp_path_factory.mktemp("prompts")
    real = Path(__file__).resolve().parents[2] / "bridge" / "prompts"
    t = np.arange(800) / 8000
    for i, path in enumerate(sorted(real.rglob("*.wav"))):
        target = root / path.relative_to(real)
        target.parent.mkdir(parents=True, exist_ok=True)
        pcm = (2000 * np.sin(2 * np.pi * (300 + 7 * i) * t)).astype("<i2")
        with wave.open(str(target), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(pcm.tobytes())
    return root


@dataclass
class Rig:
    app: BridgeApp
    controller: ConferenceController
    store: SqliteStore
    phone: Phone
    rooms: dict[str, int]

    def leg_of(self, caller: str) -> str | None:
        for leg_id, call in self.controller.calls.items():
            if caller in call.leg.caller:
                return leg_id
        return None

    def in_room(self, caller: str) -> bool:
        leg = self.leg_of(caller)
        return leg is not None and self.controller.calls[leg].in_room

    def media_room(self, room: str) -> str:
        return self.controller.active[self.rooms[room]].media_room

    async def join(self, room: str, caller: str, *, moderator: bool = False,
                   number: str = NUMBER) -> PhoneCall:
        pin = PINS[room][1 if moderator else 0]
        call = await self.phone.dial(number, caller)
        await call.wait_answered()
        await call.send_digits("2" + pin + "#")
        await until(lambda: self.in_room(caller), f"{caller} in the conference")
        await eventually(lambda: self.records(caller), f"{caller}'s call record")
        return call

    async def records(self, caller: str) -> list[CallRecord]:
        history = await self.store.call_history()
        return [r for r in history if caller in r.caller]

    async def rejections(self) -> list[Rejection]:
        return await self.store.list_rejections()


async def eventually(probe: Callable[[], Awaitable[list[T]]], what: str,
                     timeout: float = 20.0) -> list[T]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await probe()
        if found:
            return found
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def rig(tmp_path: Path, short_prompts: Path) -> AsyncIterator[Rig]:
    store = await SqliteStore.open(tmp_path / "bridge.sqlite3")
    account = await store.create_account(name="Acme", email="ops@acme.example")
    rooms: dict[str, int] = {}
    for name, (ppin, mpin) in PINS.items():
        room = await store.create_room(account_id=account.id, name=name, participant_pin=ppin,
                                       moderator_pin=mpin,
                                       max_participants=2 if name == "r3" else None,
                                       wait_for_moderator=name == "r4")
        rooms[name] = room.id
    await store.add_access_number(number=NUMBER, country="DE", language=Language.DE)
    await store.add_access_number(number=BOUND_NUMBER, country="DE", language=Language.EN,
                                  room_id=rooms["r2"])
    low, high = rtp_port_block()
    config = Config(sip=SipConfig(listen_host=LOOPBACK, listen_port=free_port(),
                                  transports=("udp",)),
                    rtp=RtpConfig(bind_host=LOOPBACK, port_low=low, port_high=high),
                    db_path=tmp_path / "bridge.sqlite3")
    controller = ConferenceController(
        store,
        ControllerConfig(node_id="test-node",
                         ivr=IvrTimers(language=1.0, pin_first_digit=3.0, pin_inter_digit=2.0)),
        load_prompts(short_prompts),
    )
    app = BridgeApp(config, controller)
    host, port = await app.start()
    phone = Phone((host, port))
    await phone.start()
    try:
        yield Rig(app=app, controller=controller, store=store, phone=phone, rooms=rooms)
    finally:
        await app.stop()
        await controller.drain()
        await phone.close()
        await store.close()


async def test_pin_by_rfc4733_joins_and_the_call_record_has_join_and_leave(rig: Rig) -> None:
    call = await rig.join("r1", "+4915100000001")
    leg = rig.leg_of("+4915100000001")
    assert leg is not None
    assert rig.app.media.engine.room_legs(rig.media_room("r1")) == {leg}
    [record] = await rig.records("+4915100000001")
    assert record.is_open and record.role is Role.PARTICIPANT
    assert record.language is Language.EN  # "2" chose English on a German number
    assert record.number_dialed == NUMBER and record.room_id == rig.rooms["r1"]
    assert record.source == "ip:127.0.0.1" and record.node_id == "test-node"

    call.hang_up()
    await call.wait_ended()
    [closed] = await eventually(
        lambda: _closed(rig.records("+4915100000001")), "record closed")
    assert closed.leave_reason is LeaveReason.HANGUP
    assert closed.left_at is not None and closed.left_at >= closed.joined_at
    await until(lambda: rig.rooms["r1"] not in rig.controller.active, "room released")


async def _closed(records: Awaitable[list[CallRecord]], count: int = 1) -> list[CallRecord]:
    """The closed records once there are at least ``count`` (else empty: not yet)."""
    closed = [r for r in await records if not r.is_open]
    return closed if len(closed) >= count else []


async def test_two_rooms_in_parallel(rig: Rig) -> None:
    await rig.join("r1", "+4915100000011")
    await rig.join("r2", "+4915100000012")
    await rig.join("r1", "+4915100000013", moderator=True)
    engine = rig.app.media.engine
    a, b, c = (rig.leg_of(f"+49151000000{i}") for i in (11, 12, 13))
    assert engine.room_legs(rig.media_room("r1")) == {a, c}
    assert engine.room_legs(rig.media_room("r2")) == {b}
    assert rig.controller.active[rig.rooms["r1"]].conference.count == 2
    live = await rig.store.live_call_records()
    assert sorted((r.room_id, r.role) for r in live) == sorted(
        [(rig.rooms["r1"], Role.PARTICIPANT), (rig.rooms["r2"], Role.PARTICIPANT),
         (rig.rooms["r1"], Role.MODERATOR)])


async def test_wrong_pin_three_times_hangs_up_with_rejections(rig: Rig) -> None:
    call = await rig.phone.dial(NUMBER, "+4915100000021")
    await call.wait_answered()
    await call.send_digits("2" + "11223344#" + "55667788#" + "99001122#")
    ended = await call.wait_ended()
    assert ended.reason == "remote_bye"
    rejections = await rig.rejections()
    assert [r.reason for r in rejections] == [RejectionReason.WRONG_PIN] * 3
    assert {r.source for r in rejections} == {"ip:127.0.0.1"}
    assert {r.number_dialed for r in rejections} == {NUMBER}
    assert await rig.store.call_history() == []


async def test_number_bound_to_a_room_refuses_other_rooms_pins(rig: Rig) -> None:
    call = await rig.phone.dial(BOUND_NUMBER, "+4915100000025")
    await call.wait_answered()
    await call.send_digits("2" + PINS["r1"][0] + "#")
    await eventually(rig.rejections, "a wrong_pin rejection")
    [rejection] = await rig.rejections()
    assert rejection.reason is RejectionReason.WRONG_PIN
    await call.send_digits(PINS["r2"][0] + "#")
    await until(lambda: rig.in_room("+4915100000025"), "joined room 2")


async def test_lock_refuses_the_next_participant_but_not_a_moderator(rig: Rig) -> None:
    moderator = await rig.join("r1", "+4915100000031", moderator=True)
    await rig.join("r1", "+4915100000032")
    await moderator.send_digits("*3")
    await until(lambda: rig.controller.active[rig.rooms["r1"]].conference.locked, "locked")

    late = await rig.phone.dial(NUMBER, "+4915100000033")
    await late.wait_answered()
    await late.send_digits("2" + PINS["r1"][0] + "#")
    assert (await late.wait_ended()).reason == "remote_bye"
    [rejection] = await rig.rejections()
    assert rejection.reason is RejectionReason.LOCKED
    assert rejection.room_id == rig.rooms["r1"]

    await rig.join("r1", "+4915100000034", moderator=True)
    assert rig.controller.active[rig.rooms["r1"]].conference.count == 3


async def test_star5_kicks_the_last_joined_participant(rig: Rig) -> None:
    moderator = await rig.join("r1", "+4915100000041", moderator=True)
    await rig.join("r1", "+4915100000042")
    last = await rig.join("r1", "+4915100000043")
    await moderator.send_digits("*5")
    assert (await last.wait_ended()).reason == "remote_bye"
    [record] = await rig.records("+4915100000043")
    assert record.leave_reason is LeaveReason.KICKED
    m, p = rig.leg_of("+4915100000041"), rig.leg_of("+4915100000042")
    assert rig.app.media.engine.room_legs(rig.media_room("r1")) == {m, p}
    assert [r.is_open for r in await rig.records("+4915100000042")] == [True]


async def test_participant_cannot_lock(rig: Rig) -> None:
    participant = await rig.join("r1", "+4915100000045")
    await participant.send_digits("*3")
    await participant.send_digits("*2")  # processed after *3: the keypad answered both
    # "2", the PIN, "#", then "*3*2": all four keypad keys reached the controller
    await until(lambda: rig.app.media.engine.counters.digits >= 1 + 8 + 1 + 4, "digits in")
    assert not rig.controller.active[rig.rooms["r1"]].conference.locked


async def test_max_participants(rig: Rig) -> None:
    await rig.join("r3", "+4915100000051")
    await rig.join("r3", "+4915100000052", moderator=True)
    third = await rig.phone.dial(NUMBER, "+4915100000053")
    await third.wait_answered()
    await third.send_digits("2" + PINS["r3"][0] + "#")
    assert (await third.wait_ended()).reason == "remote_bye"
    [rejection] = await rig.rejections()
    assert rejection.reason is RejectionReason.FULL
    assert rejection.room_id == rig.rooms["r3"]


async def test_star7_ends_the_conference_for_everyone(rig: Rig) -> None:
    moderator = await rig.join("r1", "+4915100000061", moderator=True)
    other = await rig.join("r1", "+4915100000062")
    await moderator.send_digits("*7")
    for call in (moderator, other):
        assert (await call.wait_ended()).reason == "remote_bye"
    records = await eventually(lambda: _closed(rig.store.call_history(), 2), "records closed")
    assert {r.leave_reason for r in records} == {LeaveReason.CONFERENCE_ENDED}
    assert len(records) == 2
    assert rig.rooms["r1"] not in rig.controller.active
    # the room can be used again at once
    await rig.join("r1", "+4915100000063")


async def test_participants_wait_on_hold_until_the_moderator_arrives(rig: Rig) -> None:
    caller = "+4915100000081"
    call = await rig.phone.dial(NUMBER, caller)
    await call.wait_answered()
    await call.send_digits("2" + PINS["r4"][0] + "#")
    await eventually(lambda: rig.records(caller), "record of the held participant")
    leg = rig.leg_of(caller)
    assert leg is not None
    conference = rig.controller.active[rig.rooms["r4"]].conference
    assert conference.legs[leg].waiting and not rig.in_room(caller)
    assert rig.app.media.engine.room_legs(f"leg:{leg}") == {leg}  # alone with hold music

    await rig.join("r4", "+4915100000082", moderator=True)
    await until(lambda: rig.in_room(caller), "released into the conference")
    moderator = rig.leg_of("+4915100000082")
    assert rig.app.media.engine.room_legs(rig.media_room("r4")) == {leg, moderator}
    assert not conference.legs[leg].waiting


async def test_unknown_number_is_refused_with_404(rig: Rig) -> None:
    call = await rig.phone.dial("+493099999999", "+4915100000071")
    ended = await call.wait_ended()
    assert ended.reason == "rejected" and ended.status == 404
    [rejection] = await rig.rejections()
    assert rejection.reason is RejectionReason.UNKNOWN_NUMBER
    assert rejection.number_dialed == "+493099999999"
