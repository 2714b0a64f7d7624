"""Media worker processes (``[media] workers = 2``) end to end on 127.0.0.1: a real BridgeApp
with the ConferenceController, two real worker processes, a real SQLite file, and test phones
(SIP over UDP, RTP with G.711 audio and RFC 4733 digits).

What a phone sees is checked on the wire: the bridge's RTP for a leg keeps its source port,
SSRC, sequence and timestamp clock when the leg's media moves into a worker; callers in a
worker room hear each other and not themselves. Every wait is for an observable state with a
generous deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bridge.codecs.g711 import Codec
from bridge.conference.enums import Language, LeaveReason
from bridge.config import Config, MediaConfig, RtpConfig, SipConfig
from bridge.ivr.flows import IvrTimers
from bridge.media.engine import (
    LegDigitReceived,
    LegTransfer,
    MediaEvent,
    PromptFinished,
    TalkingChanged,
)
from bridge.rtp.packet import RtpPacket, is_rtcp, parse_rtp
from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig
from bridge.runtime.prompt_files import load_prompts
from bridge.runtime.workers import WorkerPool
from bridge.store.base import CallRecord
from bridge.store.sqlite import SqliteStore
from tests.conftest import LOOPBACK, free_port, rtp_port_block
from tests.integration.confclient import Addr, Phone, PhoneCall, until
from tests.integration.test_conference_dialin import (
    NUMBER,
    PINS,
    _closed,
    eventually,
    short_prompts,  # noqa: F401 - the fixture
)
from tests.interop.audio import tone_levels

RATE = 8000
FRAME = 160


@dataclass(eq=False)
class Heard:
    """Every RTP packet a phone's call received from the bridge, with its source."""

    packets: list[tuple[RtpPacket, Addr]] = field(default_factory=list)
    mark: int = 0  # packets before this index are ignored by audio()

    def add(self, data: bytes, addr: Addr) -> None:
        if not is_rtcp(data):
            self.packets.append((parse_rtp(data), addr))

    def audio(self, codec: Codec) -> np.ndarray[tuple[int], np.dtype[np.int16]]:
        payload = b"".join(p.payload for p, _ in self.packets[self.mark:]
                           if p.payload_type in {0, 8})
        return codec.decode(np.frombuffer(payload, np.uint8))


@dataclass
class Rig:
    app: BridgeApp
    pool: WorkerPool
    controller: ConferenceController
    store: SqliteStore
    phone: Phone
    rooms: dict[str, int]
    events: list[MediaEvent]
    heard: dict[str, Heard] = field(default_factory=dict)  # by caller

    def leg_of(self, caller: str) -> str:
        for leg_id, call in self.controller.calls.items():
            if caller in call.leg.caller:
                return leg_id
        raise AssertionError(f"no leg for {caller}")

    def in_room(self, caller: str) -> bool:
        for call in self.controller.calls.values():
            if caller in call.leg.caller:
                return call.in_room
        return False

    def media_room(self, room: str) -> str:
        return self.controller.active[self.rooms[room]].media_room

    async def dial(self, caller: str) -> PhoneCall:
        call = await self.phone.dial(NUMBER, caller)
        heard = self.heard[caller] = Heard()
        protocol = call.rtp.get_protocol()
        counted = protocol.on_datagram  # type: ignore[attr-defined]

        def on_datagram(data: bytes, addr: Addr) -> None:
            counted(data, addr)
            heard.add(data, addr)

        protocol.on_datagram = on_datagram  # type: ignore[attr-defined]
        await call.wait_answered()
        return call

    async def join(self, room: str, caller: str, *, moderator: bool = False) -> PhoneCall:
        call = await self.dial(caller)
        await call.send_digits("2" + PINS[room][1 if moderator else 0] + "#")
        await until(lambda: self.in_room(caller), f"{caller} in the conference")
        await eventually(lambda: self.records(caller), f"{caller}'s call record")
        return call

    async def records(self, caller: str) -> list[CallRecord]:
        return [r for r in await self.store.call_history() if caller in r.caller]

    def talking(self) -> set[str]:
        return {e.leg for e in self.events if isinstance(e, TalkingChanged) and e.talking}

    def finished(self, target: str) -> list[int]:
        return [e.count for e in self.events
                if isinstance(e, PromptFinished) and e.target == target]


@pytest.fixture
async def rig(tmp_path: Path, short_prompts: Path) -> AsyncIterator[Rig]:  # noqa: F811
    store = await SqliteStore.open(tmp_path / "bridge.sqlite3")
    account = await store.create_account(name="Acme", email="ops@acme.example")
    rooms: dict[str, int] = {}
    for name, (ppin, mpin) in PINS.items():
        room = await store.create_room(account_id=account.id, name=name, participant_pin=ppin,
                                       moderator_pin=mpin)
        rooms[name] = room.id
    await store.add_access_number(number=NUMBER, country="DE", language=Language.DE)
    low, high = rtp_port_block()
    config = Config(sip=SipConfig(listen_host=LOOPBACK, listen_port=free_port(),
                                  transports=("udp",)),
                    rtp=RtpConfig(bind_host=LOOPBACK, port_low=low, port_high=high),
                    media=MediaConfig(workers=2),
                    db_path=tmp_path / "bridge.sqlite3")
    controller = ConferenceController(
        store,
        ControllerConfig(node_id="test-node",
                         ivr=IvrTimers(language=1.0, pin_first_digit=3.0, pin_inter_digit=2.0)),
        load_prompts(short_prompts),
    )
    app = BridgeApp(config, controller)
    events: list[MediaEvent] = []
    app.media_listeners.append(events.append)
    host, port = await app.start()
    assert app.pool is not None
    phone = Phone((host, port))
    await phone.start()
    try:
        yield Rig(app=app, pool=app.pool, controller=controller, store=store, phone=phone,
                  rooms=rooms, events=events)
    finally:
        await app.stop()
        await controller.drain()
        await phone.close()
        await store.close()
    assert not app.pool.workers  # every worker quit (or was killed) at stop


async def stream_tone(call: PhoneCall, freq: float, stop: asyncio.Event,
                      amplitude: int = 8000) -> None:
    """Send a continuous PCMU tone every 20 ms (on absolute deadlines) until ``stop``."""
    assert call.media is not None
    loop = asyncio.get_running_loop()
    start = loop.time()
    n = 0
    while not stop.is_set():
        t = (np.arange(FRAME) + n * FRAME) / RATE
        pcm = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
        call._send_rtp(call.media.payload_type, Codec.PCMU.encode(pcm).tobytes())
        call._ts = (call._ts + FRAME) & 0xFFFFFFFF
        n += 1
        delay = start + n * 0.02 - loop.time()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)


# -- the tests ----------------------------------------------------------------------------------


async def test_a_leg_moved_into_a_worker_keeps_its_rtp_stream(rig: Rig) -> None:
    caller = "+4915100000101"
    call = await rig.join("r1", caller)
    leg = rig.leg_of(caller)
    pid = rig.pool.worker_of(leg)
    assert pid is not None and pid != os.getpid()
    assert leg in rig.app.media_control and leg not in rig.app.media.engine
    heard = rig.heard[caller]
    before = len(heard.packets)
    # the worker sends from now on: wait for a second of its packets
    await until(lambda: len(heard.packets) >= before + 50, "RTP from the worker")

    packets = heard.packets
    assert call.media is not None
    assert {addr for _, addr in packets} == {(call.media.remote_address, call.media.remote_port)}
    assert len({p.ssrc for p, _ in packets}) == 1  # one stream: the main process's, continued
    sequences = [p.sequence for p, _ in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(sequences))
    steps = [(b.timestamp - a.timestamp) & 0xFFFFFFFF
             for (a, _), (b, _) in itertools.pairwise(packets)]
    assert all(step > 0 and step % FRAME == 0 for step in steps)
    assert max(steps) <= 10 * FRAME  # the move leaves no gap in the sampling clock


async def test_three_callers_in_a_worker_room_hear_each_other_and_not_themselves(
        rig: Rig) -> None:
    callers = {"+4915100000111": 440.0, "+4915100000112": 770.0, "+4915100000113": 1209.0}
    calls = {caller: await rig.join("r1", caller) for caller in callers}
    legs = {rig.leg_of(c) for c in callers}
    room = rig.media_room("r1")
    assert rig.app.media_control.room_legs(room) == legs
    assert {rig.pool.worker_of(leg) for leg in legs} == {rig.pool.room_worker(room)}

    stop = asyncio.Event()
    senders = [asyncio.create_task(stream_tone(calls[c], f, stop)) for c, f in callers.items()]
    try:
        await until(lambda: rig.talking() >= legs,
                    "all three talking (voice activity in the worker)")
        for heard in rig.heard.values():
            heard.mark = len(heard.packets)
        await until(lambda: all(len(h.packets) - h.mark >= 50 for h in rig.heard.values()),
                    "a second of mixed audio for everyone")
    finally:
        stop.set()
        await asyncio.gather(*senders)

    freqs = list(callers.values())
    for caller, own in callers.items():
        levels = tone_levels(rig.heard[caller].audio(Codec.PCMU), freqs)
        median = dict(zip(freqs, np.median(levels, axis=0), strict=True))
        others = [f for f in freqs if f != own]
        assert all(median[f] > -30.0 for f in others), (caller, median)
        assert median[own] < -50.0, (caller, median)  # nobody hears themselves


async def test_two_rooms_go_to_two_workers(rig: Rig) -> None:
    await rig.join("r1", "+4915100000121")
    await rig.join("r2", "+4915100000122")
    await rig.join("r1", "+4915100000123")
    r1, r2 = rig.media_room("r1"), rig.media_room("r2")
    w1, w2 = rig.pool.room_worker(r1), rig.pool.room_worker(r2)
    assert w1 is not None and w2 is not None and w1 != w2  # fewest legs first
    assert rig.app.media_control.room_legs(r1) == {rig.leg_of("+4915100000121"),
                                                   rig.leg_of("+4915100000123")}
    assert rig.app.media_control.room_legs(r2) == {rig.leg_of("+4915100000122")}
    stats = {s.pid: s for s in await rig.pool.stats()}
    assert stats[w1].legs == 2 and stats[w2].legs == 1
    assert rig.app.media.engine.leg_count == 0  # nothing left in the main process


async def test_keypad_in_a_worker_room_reaches_the_controller(rig: Rig) -> None:
    caller = "+4915100000131"
    call = await rig.join("r1", caller)
    await rig.join("r1", "+4915100000132")
    leg = rig.leg_of(caller)
    conference = rig.controller.active[rig.rooms["r1"]].conference
    before = rig.app.media_control.prompt_count(leg)

    await call.send_digits("*1")
    await until(lambda: conference.legs[leg].muted, "*1 muted the caller")
    await until(lambda: rig.app.media_control.prompt_count(leg) > before,
                "you_are_muted played in the worker")
    digits = [e.digit for e in rig.events if isinstance(e, LegDigitReceived) and e.leg == leg]
    assert digits[-2:] == ["*", "1"]

    counted = rig.app.media_control.prompt_count(leg)
    await call.send_digits("*2")  # "there is one other participant"
    await until(lambda: rig.app.media_control.prompt_count(leg) > counted,
                "the participant count played")
    assert rig.finished(leg)[-1] == rig.app.media_control.prompt_count(leg)


async def test_a_room_announcement_in_a_worker_finishes(rig: Rig) -> None:
    moderator = await rig.join("r1", "+4915100000141", moderator=True)
    await rig.join("r1", "+4915100000142")
    room = rig.media_room("r1")
    target = f"room:{room}"
    assert rig.pool.room_worker(room) is not None
    await moderator.send_digits("*3")  # "the conference is now locked", to the whole room
    await until(lambda: bool(rig.finished(target)), "the lock announcement finished")
    assert rig.controller.active[rig.rooms["r1"]].conference.locked
    count = rig.app.media_control.prompt_count(target)
    assert count >= 1

    clips = rig.controller.prompts.sequence("en", "conference_now_unlocked")
    ticket = rig.app.media_control.play_room(room, clips)
    assert ticket == count + len(clips)
    await until(lambda: rig.app.media_control.prompt_count(target) >= ticket,
                "a room prompt played to its end")


async def test_hangup_frees_the_leg_in_the_worker_and_the_port(rig: Rig) -> None:
    caller = "+4915100000151"
    call = await rig.join("r1", caller)
    leg = rig.leg_of(caller)
    assert call.media is not None
    port = call.media.remote_port
    assert port not in rig.app.media.ports.candidates()
    assert sum(s.legs for s in await rig.pool.stats()) == 1

    call.hang_up()
    await call.wait_ended()
    await until(lambda: leg not in rig.app.media_control, "the leg gone")
    assert port in rig.app.media.ports.candidates()
    await eventually(lambda: _worker_legs(rig, 0), "the worker removed the leg")
    [record] = await eventually(
        lambda: _closed(rig.records(caller)), "the call record closed")
    assert record.leave_reason is LeaveReason.HANGUP


async def test_a_kicked_leg_comes_back_to_the_main_process(rig: Rig) -> None:
    moderator = await rig.join("r1", "+4915100000161", moderator=True)
    kicked = await rig.join("r1", "+4915100000162")
    leg = rig.leg_of("+4915100000162")
    heard = rig.heard["+4915100000162"]
    # Record the leg's media arriving back in the main process (a failed export would also
    # end the call, as lost media: the BYE alone does not tell).
    adopted: list[tuple[str, int]] = []
    adopt = rig.app.media.adopt_leg

    def adopting(state: LegTransfer, rtp: socket.socket, rtcp: socket.socket) -> None:
        adopt(state, rtp, rtcp)
        adopted.append((state.leg_id, len(heard.packets)))

    rig.app.media.adopt_leg = adopting  # type: ignore[method-assign]
    await moderator.send_digits("*5")
    assert (await kicked.wait_ended()).reason == "remote_bye"  # after "you were removed"
    [(back, packets_then)] = adopted
    assert back == leg
    assert len(heard.packets) > packets_then  # "you were removed", from the main process
    [record] = await rig.records("+4915100000162")
    assert record.leave_reason is LeaveReason.KICKED
    assert leg not in rig.app.media_control
    sequences = [p.sequence for p, _ in heard.packets]
    assert len({p.ssrc for p, _ in heard.packets}) == 1
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(sequences))


async def test_a_killed_worker_hangs_up_its_calls_and_the_bridge_serves_on(rig: Rig) -> None:
    first = await rig.join("r1", "+4915100000171")
    second = await rig.join("r1", "+4915100000172")
    pid = rig.pool.room_worker(rig.media_room("r1"))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    for call in (first, second):
        assert (await call.wait_ended()).reason == "remote_bye"
    records = await eventually(lambda: _closed(rig.store.call_history(), 2), "records closed")
    assert {r.leave_reason for r in records} == {LeaveReason.INTERRUPTED}
    assert len(records) == 2
    assert rig.pool.deaths == 1
    assert pid not in {w.pid for w in rig.pool.workers}

    third = await rig.join("r1", "+4915100000173")
    leg = rig.leg_of("+4915100000173")
    assert rig.pool.worker_of(leg) not in (None, pid)
    heard = rig.heard["+4915100000173"]
    before = len(heard.packets)
    await until(lambda: len(heard.packets) >= before + 10, "RTP from a live worker")
    third.hang_up()
    await third.wait_ended()


async def _worker_legs(rig: Rig, count: int) -> list[int]:
    """[legs in every worker] once that is ``count`` (else empty: not yet)."""
    legs = sum(s.legs for s in await rig.pool.stats())
    return [legs] if legs == count else []

