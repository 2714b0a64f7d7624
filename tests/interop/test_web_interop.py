"""The web API on a live conference of real SIP peers (baresip) over loopback: the bridge
(BridgeApp + ConferenceController, real prompts, a real SQLite file) and its web server in the
test's loop, a WebSocket client of /api/v1/events, baresip callers with their own tones whose
received audio (baresip's decoded dump) is checked. Once in one process, once with a media
worker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from bridge.conference.enums import Language, LeaveReason
from bridge.config import Config, MediaConfig
from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig
from bridge.runtime.serve import ProcessHealth, load_prompts
from bridge.store.base import RejectionReason
from bridge.store.sqlite import SqliteStore
from bridge.web.app import create_app, serve_app
from bridge.web.auth import hash_token, new_token
from bridge.web.probe import RuntimeMetrics
from tests.conftest import LOOPBACK
from tests.integration.test_web_acceptance import Events
from tests.integration.webclient import Api
from tests.interop.audio import HeardAudio, tone_levels
from tests.interop.conftest import bridge_config
from tests.interop.peers import Baresip, write_tone_wav
from tests.interop.test_conference_e2e import KEYS_FROM, LANGUAGE_KEY, NUMBER, measure_speech

PIN, MODERATOR_PIN = "72946183", "38164927"


@dataclass
class Live:
    app: BridgeApp
    controller: ConferenceController
    store: SqliteStore
    config: Config
    api: Api
    url: str
    token: str
    room_id: int
    tmp: Path


@pytest.fixture(params=[0, 1], ids=["one-process", "workers-1"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Live]:
    config = bridge_config(tmp_path)
    config = dataclasses.replace(config, media=MediaConfig(workers=request.param,
                                                           max_lateness_p99_ms=0.0))
    store = await SqliteStore.open(config.db_path)
    account = await store.create_account(name="Web GmbH", email="web@example.com")
    await store.add_access_number(number=NUMBER, country="DE", language=Language.DE)
    room = await store.create_room(account_id=account.id, name="Board", participant_pin=PIN,
                                   moderator_pin=MODERATOR_PIN)
    token = new_token()
    await store.create_api_token(account_id=account.id, name="t", token_hash=hash_token(token),
                                 created_at=time.time())
    prompts = load_prompts(config)
    assert prompts is not None
    controller = ConferenceController(store, ControllerConfig(node_id="web-node"), prompts)
    app = BridgeApp(config, controller)
    controller.attach(app)
    await app.start()
    health = ProcessHealth(app)
    health.start()
    web = create_app(store, config, service=controller, health=health,
                     metrics=RuntimeMetrics(app), node_id="web-node")
    running = await serve_app(web, config)
    assert running is not None
    session = aiohttp.ClientSession()
    try:
        yield Live(app=app, controller=controller, store=store, config=config,
                   api=Api(session, running.url, token), url=running.url, token=token,
                   room_id=room.id, tmp=tmp_path)
    finally:
        await session.close()
        await running.close()
        health.stop()
        await app.stop()
        await controller.drain()
        await store.close()


@dataclass
class Caller:
    name: str
    tone_hz: float
    baresip: Baresip
    established_at: float = 0.0

    async def join(self, live: Live, pin: str) -> None:
        target = f"{LOOPBACK}:{live.app.local[1]}"
        await self.baresip.command("dial", f"sip:{NUMBER}@{target}")
        await self.baresip.wait_event("CALL_ESTABLISHED", timeout=15)
        self.established_at = time.monotonic()
        await asyncio.sleep(KEYS_FROM)
        for key in LANGUAGE_KEY + pin + "#":
            await self.baresip.command("sndcode", key)
            await asyncio.sleep(0.25)

    def heard(self) -> np.ndarray[tuple[int], np.dtype[np.int16]]:
        import wave

        wavs = self.baresip.received_wavs()
        assert wavs, f"{self.name}: no received audio\n{self.baresip.log()}"
        with wave.open(str(wavs[-1]), "rb") as handle:
            return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")

    def between(self, start: float, end: float) -> np.ndarray[tuple[int], np.dtype[np.int16]]:
        pcm = self.heard()
        first = max(0, round((start - self.established_at) * 8000))
        last = max(first, round((end - self.established_at) * 8000))
        return pcm[first:last]


async def caller(live: Live, name: str, tone_hz: float) -> Caller:
    wav = live.tmp / f"{name}.wav"
    write_tone_wav(wav, tone_hz, 90.0, amplitude=3600)
    phone = Caller(name, tone_hz, Baresip(live.tmp / name, wav))
    await phone.baresip.start(lifetime=80)
    return phone


async def wait_for(events: Events, what: str, count: int = 1, timeout: float = 20.0) -> float:
    """Wait until ``count`` events of type ``what`` arrived; the monotonic time it happened."""
    deadline = time.monotonic() + timeout
    while events.types().count(what) < count:
        assert time.monotonic() < deadline, f"no {what}: {events.types()}"
        await asyncio.sleep(0.01)
    return time.monotonic()


async def test_web_api_drives_a_conference_of_baresip_callers(live: Live) -> None:
    api = live.api
    path = f"/api/v1/conferences/{live.room_id}"
    moderator = await caller(live, "moderator", 1000.0)
    member = await caller(live, "member", 440.0)
    late = await caller(live, "late", 1700.0)
    try:
        async with api.session.ws_connect(f"{live.url}/api/v1/events",
                                          headers={"Authorization": f"Bearer {live.token}"}
                                          ) as ws:
            events = Events(ws)
            await asyncio.sleep(0.2)
            await moderator.join(live, MODERATOR_PIN)
            joined = await wait_for(events, "participant_joined")
            await _listed(live, "moderator", joined)
            await member.join(live, PIN)
            joined = await wait_for(events, "participant_joined", 2)
            member_id = await _listed(live, "participant", joined)

            await wait_for(events, "talking_started", 2)
            before = time.monotonic()
            await asyncio.sleep(2.5)
            muted_at = time.monotonic()
            reply = await api.post(f"{path}/participants/{member_id}/mute")
            assert reply.status == 200, reply.body
            await wait_for(events, "participant_muted")
            await asyncio.sleep(3.0)
            after_end = time.monotonic()

            kicked = await api.call("POST", f"{path}/participants/{member_id}/kick",
                                    {"announce": False})
            assert kicked.status == 200, kicked.body
            await member.baresip.wait_event("CALL_CLOSED", timeout=10)
            await wait_for(events, "participant_left")

            locked = await api.post(f"{path}/lock")
            assert locked.status == 200, locked.body
            await late.join(live, PIN)
            await late.baresip.wait_event("CALL_CLOSED", timeout=20)
            ended_late = time.monotonic()

            await moderator.baresip.command("hangup")
            await moderator.baresip.wait_event("CALL_CLOSED", timeout=10)
            await wait_for(events, "participant_left", 2)
            kinds = events.types()
            assert kinds.index("participant_joined") < kinds.index("talking_started") \
                < kinds.index("participant_muted") < kinds.index("participant_left")
            seqs = [i["seq"] for i in events.items if "seq" in i]
            assert seqs == sorted(seqs)
            [first_left] = [i for i in events.items if i["type"] == "participant_left"][:1]
            assert first_left["leg"] == member_id and first_left["by"] == "web"
    finally:
        for phone in (moderator, member, late):
            await phone.baresip.stop()

    # the moderator heard the member until the API muted it, and not after
    heard_before = tone_levels(moderator.between(before, muted_at - 0.2), [440.0])[:, 0]
    heard_after = tone_levels(moderator.between(muted_at + 0.5, after_end), [440.0])[:, 0]
    assert heard_before.size >= 15 and heard_after.size >= 15
    assert float(np.median(heard_before)) > -35.0, heard_before
    assert float(np.median(heard_after)) < -60.0, heard_after

    history = await live.store.call_history(room_id=live.room_id)
    [removed] = [r for r in history if r.role.value == "participant"]
    assert removed.leave_reason is LeaveReason.KICKED
    rejections = await live.store.list_rejections()
    assert [r.reason for r in rejections] == [RejectionReason.LOCKED]
    # the late caller heard the conference_locked prompt before the bridge hung up
    refused = late.between(ended_late - 8.0, ended_late)
    assert measure_speech_pcm(refused) > 1.0


def measure_speech_pcm(pcm: np.ndarray[tuple[int], np.dtype[np.int16]]) -> float:
    """Seconds of prompt (non-silent audio) in ``pcm``."""
    return measure_speech(HeardAudio(pcm, 0.0), 0.0, pcm.size / 8000)


async def _listed(live: Live, role: str, since: float) -> str:
    """The API lists a caller of ``role`` in the conference within 1 s of its join event."""
    path = f"/api/v1/conferences/{live.room_id}/participants"
    while True:
        reply = await live.api.get(path)
        if reply.status == 200:
            found = [p for p in reply.body["participants"]
                     if p["role"] == role and p["state"] == "in_conference"]
            if found:
                return str(found[-1]["id"])
        assert time.monotonic() - since < 1.0, f"no {role} listed within 1 s: {reply.body}"
        await asyncio.sleep(0.02)
