"""Dial-in conferences end to end, with real and independent SIP peers on 127.0.0.1.

The bridge runs in the test's event loop with the ``ConferenceController`` over a real SQLite
file that holds an account, rooms with PINs and the access number; the callers are SIPp
(RTP from a generated pcap: the caller's own test tone, the language key and the PIN as
RFC 4733 events on PT 101 or 96, or as in-band tone pairs) and baresip (PIN typed with
``sndcode``, a tone WAV as microphone). Each caller dials ``sip:+493012345678@bridge``, types
the language key ``2`` and its PIN (type-ahead: the IVR keeps keys pressed during its prompts),
hears the count prompt and joins.

What each participant heard is checked on what it received: baresip's decoded dump, SIPp's
RTP captured on the loopback (:mod:`tests.interop.capture`). "Hears the others, not itself"
is judged only once everyone is in the room (:mod:`tests.interop.audio`). Waits are on
events (SIP, baresip's ctrl_tcp events, rows in the store) with generous bounds; every peer
has its own hard time limit (SIPp ``-timeout``, baresip ``-t``).

Covered: three participants (SIPp PT 101, baresip, SIPp PT 96) hearing each other and never
themselves; two rooms in parallel (one caller with an in-band PIN, PCMU only) never hearing
each other; three wrong PINs ending the call; the moderator's ``*3`` lock refusing the next
caller and ``*5`` removing the last joined; the room limit; call records (join and leave times
within 1 s, roles, language, reasons) and rejections; ``bridge serve`` killed with SIGKILL
mid-call, its open record closed as ``interrupted`` by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from bridge.conference.enums import Language, LeaveReason, Role
from bridge.conference.model import Room
from bridge.config import ConferenceConfig
from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig
from bridge.store.base import Account, CallRecord, Rejection, RejectionReason
from bridge.store.sqlite import SqliteStore
from tests.conftest import LOOPBACK, free_port, require_binary, rtp_port_block
from tests.interop.audio import HeardAudio, assert_hears, from_capture, from_wav, onset
from tests.interop.capture import LoopbackCapture, require_capture
from tests.interop.conftest import bridge_config
from tests.interop.pcapgen import CallStream, DigitAt, digits_at, write_stream_pcap
from tests.interop.peers import Baresip, SippResult, run_sipp, write_tone_wav

NUMBER = "+493012345678"
LANGUAGE_KEY = "2"  # English
KEYS_FROM = 1.5  # seconds after the answer: the welcome prompt is playing (barge-in)
T = TypeVar("T")


# -- the bridge with its database -------------------------------------------------------------


@dataclass
class Dialin:
    app: BridgeApp
    controller: ConferenceController
    store: SqliteStore
    account: Account
    tmp: Path
    node_id: str = "e2e-node"

    @property
    def target(self) -> str:
        return f"{LOOPBACK}:{self.app.local[1]}"

    async def room(self, name: str, participant_pin: str, moderator_pin: str,
                   **options: object) -> Room:
        return await self.store.create_room(
            account_id=self.account.id, name=name, participant_pin=participant_pin,
            moderator_pin=moderator_pin, **options)  # type: ignore[arg-type]

    async def live(self, room: Room) -> list[CallRecord]:
        return await self.store.live_call_records(room.id)

    async def history(self, room: Room) -> list[CallRecord]:
        return await self.store.call_history(room_id=room.id)

    async def rejections(self) -> list[Rejection]:
        return await self.store.list_rejections()


async def prepare_store(path: Path) -> tuple[SqliteStore, Account]:
    store = await SqliteStore.open(path)
    account = await store.create_account(name="E2E GmbH", email="e2e@example.com")
    await store.add_access_number(number=NUMBER, country="DE", language=Language.DE)
    return store, account


@pytest.fixture
async def dialin(tmp_path: Path) -> AsyncIterator[Dialin]:
    require_capture()
    # The tick-lateness guard of admission control (503 + Retry-After) is off: this machine
    # is shared with other test runs, and overload is not what these tests are about.
    config = bridge_config(tmp_path)
    config = dataclasses.replace(
        config, media=dataclasses.replace(config.media, max_lateness_p99_ms=0.0))
    store, account = await prepare_store(config.db_path)
    controller = ConferenceController(store, ControllerConfig(node_id="e2e-node"))
    app = BridgeApp(config, controller)
    await app.start()
    try:
        yield Dialin(app, controller, store, account, tmp_path)
    finally:
        await app.stop()
        await controller.drain()
        await store.close()


async def until(check: Callable[[], Awaitable[T | None]], what: str,
                timeout: float = 20.0) -> T:
    """Poll ``check`` until it returns something truthy (no fixed sleeps to get wrong)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


def epoch(monotonic: float) -> float:
    """A ``loop.time()`` reading as UTC epoch seconds (the store's clock)."""
    return monotonic + (time.time() - time.monotonic())


# -- the callers ------------------------------------------------------------------------------


@dataclass
class SippCaller:
    """One SIPp call, its pcap and what it received."""

    name: str
    tone_hz: float
    workdir: Path
    media_port: int
    task: asyncio.Task[SippResult]
    ended_at: float = 0.0  # loop time SIPp exited (just after its BYE or the bridge's)

    def exited(self, _: asyncio.Task[SippResult]) -> None:
        self.ended_at = asyncio.get_running_loop().time()

    async def finished_ok(self) -> SippResult:
        result = await self.task
        assert result.returncode == 0, f"{self.name}: SIPp exit {result.returncode}\n" \
            f"{result.stdout[-2000:]}{result.stderr[-1500:]}{result.logs}"
        return result

    def heard(self, capture: LoopbackCapture) -> HeardAudio:
        return from_capture(capture.packets(self.media_port), label=self.name)


async def sipp_caller(
    dialin: Dialin,
    name: str,
    *,
    tone_hz: float,
    keys: str,
    te_pt: int = 101,
    inband: bool = False,
    hold: float = 12.0,
    wait_bye: bool = False,
    caller: str = "",
    timeout: float = 45.0,
    media_port: int | None = None,
) -> SippCaller:
    """Start SIPp dialling the access number: the language key at ``KEYS_FROM`` s, then
    ``keys`` (``PIN#`` ...), then the tone (from the start with RFC 4733 keys, after the
    keys when they are in-band tones). It hangs up after ``hold`` s, or waits for the
    bridge's BYE (``wait_bye``). Capture what it hears by watching ``media_port``."""
    workdir = dialin.tmp / name
    workdir.mkdir()
    presses: tuple[DigitAt, ...] = digits_at(LANGUAGE_KEY, KEYS_FROM) + digits_at(
        keys, KEYS_FROM + 0.5)
    tone_from = presses[-1].at + 0.3 if inband else 0.0
    seconds = timeout if wait_bye else hold + 2.0
    stream = CallStream(seconds=seconds, tone_hz=tone_hz, tone_from=tone_from, digits=presses,
                        event_pt=te_pt, inband=inband, ssrc=0x5EED0000 + int(tone_hz))
    # off the event loop: the bridge under test ticks in it every 20 ms
    await asyncio.to_thread(write_stream_pcap, workdir / "call.pcap", stream)
    if inband:
        scenario = "conf_caller_inband.xml"
    else:
        scenario = "conf_caller_wait_bye.xml" if wait_bye else "conf_caller.xml"
    media_port = media_port or free_port(even=True, span=4)
    require_binary("sipp")  # fail (CI) or skip now, not after a timeout
    task = asyncio.create_task(run_sipp(
        scenario, dialin.target, tmp=workdir, service=NUMBER,
        keys={"te_pt": str(te_pt), "caller": caller or f"+4989{int(tone_hz):07d}"},
        pause_ms=int(hold * 1000), media_port=media_port, timeout=timeout,
    ))
    sipp = SippCaller(name, tone_hz, workdir, media_port, task)
    task.add_done_callback(sipp.exited)
    return sipp


@dataclass
class Phone:
    """baresip dialling in: tone WAV as microphone, PIN with ``sndcode``."""

    name: str
    tone_hz: float
    baresip: Baresip
    established_at: float = 0.0
    hung_up_at: float = 0.0

    async def dial(self, target: str) -> None:
        await self.baresip.command("dial", f"sip:{NUMBER}@{target}")
        await self.baresip.wait_event("CALL_ESTABLISHED", timeout=15)
        self.established_at = asyncio.get_running_loop().time()

    async def press(self, keys: str, gap: float = 0.25) -> None:
        for key in keys:
            await self.baresip.command("sndcode", key)
            await asyncio.sleep(gap)  # key pacing, like a person dialling

    async def hang_up(self) -> None:
        self.hung_up_at = asyncio.get_running_loop().time()
        await self.baresip.command("hangup")
        await self.baresip.wait_event("CALL_CLOSED", timeout=10)

    def heard(self) -> HeardAudio:
        wavs = self.baresip.received_wavs()
        assert wavs, f"{self.name}: baresip wrote no received audio\n{self.baresip.log()}"
        return from_wav(wavs[-1], self.established_at, self.name)


async def start_phone(dialin: Dialin, name: str, tone_hz: float,
                      lifetime: int = 60) -> Phone:
    wav = dialin.tmp / f"{name}.wav"
    write_tone_wav(wav, tone_hz, lifetime + 10.0, amplitude=3600)  # about -16 dBm0
    phone = Phone(name, tone_hz, Baresip(dialin.tmp / name, wav))
    await phone.baresip.start(lifetime=lifetime)
    return phone


async def join_phone(dialin: Dialin, phone: Phone, pin: str) -> None:
    """Dial, wait through the welcome, type the language key and ``pin#``."""
    await phone.dial(dialin.target)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, phone.established_at + KEYS_FROM - loop.time()))
    await phone.press(LANGUAGE_KEY + pin + "#")


def tones(*members: SippCaller | Phone) -> dict[str, float]:
    return {m.name: m.tone_hz for m in members}


async def live_count(dialin: Dialin, room: Room, count: int) -> list[CallRecord] | None:
    live = await dialin.live(room)
    return live if len(live) >= count else None


def monotonic(epoch_seconds: float) -> float:
    """An epoch time from the store as a ``loop.time()`` reading."""
    return epoch_seconds - (time.time() - time.monotonic())


def record_of(records: list[CallRecord], caller: str) -> CallRecord:
    found = [r for r in records if caller in r.caller]
    assert len(found) == 1, f"one record for {caller} expected: {records}"
    return found[0]


def check_join_times(records: dict[str, CallRecord], heard: dict[str, HeardAudio],
                     tone_of: dict[str, float]) -> None:
    """Each join is stored within 1 s of the moment the ones already in the room start
    hearing the joiner's tone (sent at -16 dBm0, so -30 dBm0 means it is there)."""
    checked = 0
    for joiner, record in records.items():
        for listener, audio in heard.items():
            if listener == joiner or records[listener].joined_at >= record.joined_at:
                continue
            # look from the listener's own join: before it, its IVR prompts (speech) played
            looked_from = max(monotonic(records[listener].joined_at),
                              monotonic(record.joined_at) - 3.0)
            started = onset(audio, tone_of[joiner], after=looked_from, present_dbm0=-30.0)
            assert started is not None, f"{listener} never heard {joiner}"
            assert abs(epoch(started) - record.joined_at) < 1.0, (
                f"{joiner} joined at {record.joined_at:.2f} by the records, {listener} heard "
                f"it from {epoch(started):.2f}")
            checked += 1
    assert checked >= len(records) - 1


def window(*calls: SippCaller, everyone_in: float) -> tuple[float, float]:
    """From 1 s after the last join (join tones) to 0.5 s before the first hangup."""
    return everyone_in + 1.0, min(c.ended_at for c in calls) - 0.5


async def test_three_participants_hear_each_other_never_themselves(dialin: Dialin) -> None:
    """SIPp (RFC 4733 on PT 101), baresip (sndcode) and SIPp (telephone-event on PT 96, as
    linphone offers it) join one room; each hears the other two and never itself. The call
    records say who joined and left, when, with which role and language."""
    room = await dialin.room("Weekly", "48151623", "97531864")
    ports = [free_port(even=True, span=4) for _ in range(2)]
    phone = await start_phone(dialin, "baresip", 1000.0)
    try:
        with LoopbackCapture(ports) as capture:
            a = await sipp_caller(dialin, "sipp-pt101", tone_hz=440.0, keys="48151623#",
                            media_port=ports[0], hold=14.0)
            c = await sipp_caller(dialin, "sipp-pt96", tone_hz=1700.0, keys="48151623#", te_pt=96,
                            media_port=ports[1], hold=14.0)
            await join_phone(dialin, phone, "48151623")
            live = await until(lambda: live_count(dialin, room, 3), "3 legs in the room")
            everyone_in = monotonic(max(r.joined_at for r in live))
            await a.finished_ok()
            await c.finished_ok()
            await phone.hang_up()
    finally:
        await phone.baresip.stop()

    start, end = window(a, c, everyone_in=everyone_in)
    heard = {a.name: a.heard(capture), c.name: c.heard(capture), phone.name: phone.heard()}
    tone_of = tones(a, c, phone)
    for name, audio in heard.items():
        others = {n: f for n, f in tone_of.items() if n != name}
        assert_hears(audio, hears=others, not_hears={name: tone_of[name]}, start=start, end=end)

    records = await until(lambda: closed_records(dialin, room, 3), "3 closed call records")
    by_name = {a.name: record_of(records, "+49890000440"),
               c.name: record_of(records, "+49890001700"),
               phone.name: record_of(records, "tester")}
    for record in records:
        assert record.role is Role.PARTICIPANT and record.language is Language.EN
        assert record.number_dialed == NUMBER and record.node_id == dialin.node_id
        assert record.leave_reason is LeaveReason.HANGUP
    hangups = {a.name: a.ended_at, c.name: c.ended_at, phone.name: phone.hung_up_at}
    for name, record in by_name.items():
        assert record.left_at is not None
        assert abs(record.left_at - epoch(hangups[name])) < 1.0, (name, record)
    check_join_times(by_name, heard, tone_of)
    assert await dialin.rejections() == []


async def closed_records(dialin: Dialin, room: Room, count: int) -> list[CallRecord] | None:
    records = await dialin.history(room)
    done = [r for r in records if not r.is_open]
    return records if len(done) >= count else None


async def test_two_rooms_in_parallel_never_hear_each_other(dialin: Dialin) -> None:
    """Two conferences at once. In the first, one caller comes through a trunk that knows no
    telephone-event (PCMU only) and sends its keys as in-band DTMF tones."""
    sales = await dialin.room("Sales", "36925814", "74185296")
    support = await dialin.room("Support", "52863791", "19374628")
    ports = [free_port(even=True, span=4) for _ in range(4)]
    with LoopbackCapture(ports) as capture:
        a = await sipp_caller(dialin, "sales-inband", tone_hz=440.0, keys="36925814#", inband=True,
                        media_port=ports[0], hold=14.0)
        b = await sipp_caller(dialin, "sales-pt101", tone_hz=1000.0, keys="36925814#",
                        media_port=ports[1], hold=14.0)
        c = await sipp_caller(dialin, "support-pt101", tone_hz=1700.0, keys="52863791#",
                        media_port=ports[2], hold=14.0)
        d = await sipp_caller(dialin, "support-pt96", tone_hz=2300.0, keys="52863791#", te_pt=96,
                        media_port=ports[3], hold=14.0)
        in_sales = await until(lambda: live_count(dialin, sales, 2), "2 legs in Sales")
        in_support = await until(lambda: live_count(dialin, support, 2), "2 legs in Support")
        for caller in (a, b, c, d):
            await caller.finished_ok()
    everyone_in = monotonic(max(r.joined_at for r in in_sales + in_support))
    start, end = window(a, b, c, d, everyone_in=everyone_in)
    everybody = tones(a, b, c, d)
    for me, mate in ((a, b), (b, a), (c, d), (d, c)):
        assert_hears(me.heard(capture), hears={mate.name: mate.tone_hz},
                     not_hears={n: f for n, f in everybody.items() if n != mate.name},
                     start=start, end=end)
    for room, callers in ((sales, (a, b)), (support, (c, d))):
        records = await until(functools.partial(closed_records, dialin, room, 2),
                              f"2 closed records in {room.name}")
        assert len(records) == 2
        for caller in callers:
            record = record_of(records, f"+4989{int(caller.tone_hz):07d}")
            assert record.leave_reason is LeaveReason.HANGUP
    assert await dialin.rejections() == []


async def test_three_wrong_pins_end_the_call(dialin: Dialin) -> None:
    """Three wrong PINs: three ``wrong_pin`` rejections, the goodbye prompt, then the
    bridge's BYE. Nobody joins anything."""
    room = await dialin.room("Board", "61728394", "83746152")
    port = free_port(even=True, span=4)
    with LoopbackCapture([port]) as capture:
        guesser = await sipp_caller(dialin, "guesser", tone_hz=440.0, media_port=port,
                              keys="20406080#31517191#42638495#", wait_bye=True, timeout=40.0)
        await guesser.finished_ok()  # SIPp saw the BYE and answered it
    rejections = await dialin.rejections()
    assert [r.reason for r in rejections] == [RejectionReason.WRONG_PIN] * 3
    for rejection in rejections:
        assert rejection.number_dialed == NUMBER and rejection.room_id is None
        assert "+49890000440" in rejection.caller and rejection.source == "ip:127.0.0.1"
    assert await dialin.history(room) == []
    # the goodbye prompt was heard before the BYE
    heard = guesser.heard(capture)
    last = rejections[-1].at
    goodbye = measure_speech(heard, monotonic(last) + 0.5, guesser.ended_at - 0.3)
    assert goodbye > 1.5, f"only {goodbye:.1f} s of prompt between the last try and the BYE"


def measure_speech(heard: HeardAudio, start: float, end: float) -> float:
    """Seconds of non-silent audio (a prompt) between ``start`` and ``end``."""
    pcm = heard.between(start, end).astype(np.float64)
    frames = pcm[: pcm.size // 160 * 160].reshape(-1, 160)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 100.0  # about -50 dBm0
    return float(loud.sum()) * 0.02


async def locked(dialin: Dialin, room: Room) -> bool:
    active = dialin.controller.active.get(room.id)
    return active is not None and active.conference.locked


async def test_moderator_locks_with_star3_and_removes_the_last_joined_with_star5(
    dialin: Dialin,
) -> None:
    """baresip as the moderator: ``*3`` locks the room, so the next caller is refused (the
    ``conference_locked`` prompt, then the bridge's BYE); ``*5`` removes the participant who
    joined last (``you_were_removed``, BYE, record closed as ``kicked``)."""
    room = await dialin.room("Project", "72946183", "38164927")
    ports = [free_port(even=True, span=4) for _ in range(2)]
    moderator = await start_phone(dialin, "moderator", 1000.0)
    try:
        with LoopbackCapture(ports) as capture:
            await join_phone(dialin, moderator, "38164927")
            await until(lambda: live_count(dialin, room, 1), "the moderator in the room")
            member = await sipp_caller(dialin, "member", tone_hz=440.0, keys="72946183#",
                                 media_port=ports[0], wait_bye=True)
            await until(lambda: live_count(dialin, room, 2), "the member in the room")
            await moderator.press("*3")
            await until(lambda: locked(dialin, room), "the room locked by *3")
            late = await sipp_caller(dialin, "late", tone_hz=1700.0, keys="72946183#",
                               media_port=ports[1], wait_bye=True)
            await late.finished_ok()  # refused and hung up
            assert not member.task.done(), "the member must still be in the room"
            await moderator.press("*5")
            await member.finished_ok()  # removed and hung up
            kicked_at = member.ended_at
            await moderator.hang_up()
    finally:
        await moderator.baresip.stop()

    rejections = await dialin.rejections()
    assert [(r.reason, r.room_id) for r in rejections] == [(RejectionReason.LOCKED, room.id)]
    assert "+49890001700" in rejections[0].caller
    records = await until(lambda: closed_records(dialin, room, 2), "2 closed records")
    assert len(records) == 2, "the refused caller has no call record"
    boss = record_of(records, "tester")
    removed = record_of(records, "+49890000440")
    assert boss.role is Role.MODERATOR and boss.leave_reason is LeaveReason.HANGUP
    assert removed.role is Role.PARTICIPANT and removed.leave_reason is LeaveReason.KICKED
    # the record closes at the removal; the BYE follows the you_were_removed prompt
    assert removed.left_at is not None and removed.left_at <= epoch(kicked_at)
    assert epoch(kicked_at) - removed.left_at < 6.0
    assert boss.left_at is not None and abs(boss.left_at - epoch(moderator.hung_up_at)) < 1.0
    # the late caller heard the conference_locked prompt before its BYE
    refused = late.heard(capture)
    assert measure_speech(refused, monotonic(rejections[0].at), late.ended_at) > 1.5


async def test_the_room_limit_is_enforced(dialin: Dialin) -> None:
    """A room for at most two: the third caller with the right PIN hears
    ``conference_full`` and is hung up; rejection ``full``."""
    room = await dialin.room("Small", "83619274", "29475163", max_participants=2)
    first = await sipp_caller(dialin, "first", tone_hz=440.0, keys="83619274#", wait_bye=True)
    second = await sipp_caller(dialin, "second", tone_hz=1000.0, keys="29475163#", wait_bye=True)
    live = await until(lambda: live_count(dialin, room, 2), "2 legs in the room")
    third = await sipp_caller(dialin, "third", tone_hz=1700.0, keys="83619274#", wait_bye=True)
    await third.finished_ok()
    assert not first.task.done() and not second.task.done()
    for record in live:
        dialin.app.hangup(record.leg_id)
    await first.finished_ok()
    await second.finished_ok()
    rejections = await dialin.rejections()
    assert [(r.reason, r.room_id) for r in rejections] == [(RejectionReason.FULL, room.id)]
    assert "+49890001700" in rejections[0].caller
    records = await until(lambda: closed_records(dialin, room, 2), "2 closed records")
    assert sorted(r.role for r in records) == [Role.MODERATOR, Role.PARTICIPANT]
    assert len(await dialin.live(room)) == 0


# -- crash recovery: the real `bridge serve` process -------------------------------------------


async def wait_for_line(log: Path, text: str, proc: asyncio.subprocess.Process,
                        timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.returncode is not None or loop.time() > deadline:
            raise AssertionError(f"bridge serve: no {text!r}\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.05)


async def start_serve(db: Path, sip_port: int, rtp: tuple[int, int],
                      log: Path) -> asyncio.subprocess.Process:
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "serve", "--db", str(db),
            "--sip-listen", f"{LOOPBACK}:{sip_port}", "--rtp-ports", f"{rtp[0]}-{rtp[1]}",
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT,
            cwd=Path(__file__).resolve().parents[2],
        )
    await wait_for_line(log, "SIP on", proc)
    return proc


async def test_sigkill_mid_call_leaves_the_leg_closed_as_interrupted(tmp_path: Path) -> None:
    """``bridge serve`` is killed with SIGKILL while a caller is in a room; the record stays
    open until the next start, which closes it as ``interrupted`` at once."""
    db = tmp_path / "bridge.sqlite3"
    store, account = await prepare_store(db)
    room = await store.create_room(account_id=account.id, name="Crash",
                                   participant_pin="58302917", moderator_pin="40718263")
    sip_port, rtp = free_port(), rtp_port_block()
    first = await start_serve(db, sip_port, rtp, tmp_path / "serve-1.log")
    second: asyncio.subprocess.Process | None = None
    workdir = tmp_path / "caller"
    workdir.mkdir()
    presses = digits_at(LANGUAGE_KEY, KEYS_FROM) + digits_at("58302917#", KEYS_FROM + 0.5)
    write_stream_pcap(workdir / "call.pcap", CallStream(seconds=30.0, tone_hz=440.0,
                                                        digits=presses))
    require_binary("sipp")  # fail (CI) or skip now, not after a timeout
    sipp = asyncio.create_task(run_sipp(
        "conf_caller.xml", f"{LOOPBACK}:{sip_port}", tmp=workdir, service=NUMBER,
        keys={"te_pt": "101", "caller": "+4989555"}, pause_ms=60_000, timeout=30.0))
    try:
        live = await until(lambda: nonempty(store.live_call_records(room.id)),
                           "the caller's live record", timeout=25.0)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        killed_at = time.time()
        assert first.returncode == -signal.SIGKILL
        still = await store.live_call_records(room.id)
        assert [r.id for r in still] == [live[0].id], "a killed bridge closes nothing"
        second = await start_serve(db, sip_port, rtp, tmp_path / "serve-2.log")
        started_at = time.time()
        [record] = await store.call_history(room_id=room.id)
        assert record.leave_reason is LeaveReason.INTERRUPTED
        # closed at the last heartbeat before the kill (not at the restart): within one
        # heartbeat interval of the kill, and never before the leg joined
        interval = ConferenceConfig().heartbeat_interval
        assert record.left_at is not None
        assert killed_at - interval - 0.5 <= record.left_at <= killed_at < started_at
        assert record.left_at >= record.joined_at
        assert record.joined_at == live[0].joined_at and record.caller == live[0].caller
        assert await store.live_call_records() == []
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), 15) == 0
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
        await store.close()
        sipp.cancel()  # the call died with the first bridge; SIPp would wait for its timeout
        with contextlib.suppress(asyncio.CancelledError):
            await sipp


async def nonempty(pending: Awaitable[list[CallRecord]]) -> list[CallRecord] | None:
    found = await pending
    return found or None
