"""Acceptance of the web API on a running bridge: a BridgeApp with its conference controller
(the live service) on 127.0.0.1, real SIP/RTP test phones (G.711 tones, RFC 4733 PINs), the
web server on an ephemeral port with a real SQLite file, and a real WebSocket client. The same
with one media worker process.

Prompts are 0.1 s tones, one frequency per file (``short_prompts``), so "the next caller
hears the locked prompt" is checked on the audio that caller received.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.codecs.g711 import Codec
from bridge.conference.enums import Language, LeaveReason
from bridge.config import Config, MediaConfig, RtpConfig, SipConfig, WebConfig
from bridge.ivr.flows import IvrTimers
from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig
from bridge.runtime.prompt_files import load_prompts
from bridge.runtime.serve import ProcessHealth
from bridge.store.base import RejectionReason
from bridge.store.sqlite import SqliteStore
from bridge.web.app import create_app, serve_app
from bridge.web.auth import hash_token, new_token
from bridge.web.probe import RuntimeMetrics
from tests.conftest import LOOPBACK, free_port, rtp_port_block
from tests.integration.confclient import Addr, Phone, PhoneCall, until
from tests.integration.test_conference_dialin import NUMBER, PINS, eventually
from tests.integration.test_conference_dialin import short_prompts as _short_prompts
from tests.integration.test_media_workers import Heard, stream_tone
from tests.integration.webclient import Api, acli, check_schema
from tests.interop.audio import tone_levels

short_prompts = _short_prompts
PACKAGED_PROMPTS = Path(__file__).resolve().parents[2] / "bridge" / "prompts"
MODERATOR, PARTICIPANT, LATE = "+4915100000301", "+4915100000302", "+4915100000303"


def prompt_tone(name: str, language: str = "en") -> float:
    """The frequency ``short_prompts`` gave the prompt ``language/name.wav``."""
    real = PACKAGED_PROMPTS
    paths = sorted(real.rglob("*.wav"))
    return 300.0 + 7 * paths.index(real / language / f"{name}.wav")


@dataclass
class Web:
    app: BridgeApp
    controller: ConferenceController
    store: SqliteStore
    phone: Phone
    api: Api
    url: str
    rooms: dict[str, int]
    tokens: dict[str, str]
    heard: dict[str, Heard] = field(default_factory=dict)

    def in_room(self, caller: str) -> bool:
        return any(caller in c.leg.caller and c.in_room for c in self.controller.calls.values())

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
        return call


@pytest.fixture(params=[0, 1], ids=["one-process", "workers-1"])
async def web(request: pytest.FixtureRequest, tmp_path: Path,
              short_prompts: Path) -> AsyncIterator[Web]:
    db = tmp_path / "bridge.sqlite3"
    store = await SqliteStore.open(db)
    acme = await store.create_account(name="Acme", email="ops@acme.example")
    other = await store.create_account(name="Other", email="eve@other.example")
    rooms: dict[str, int] = {}
    for name, (ppin, mpin) in PINS.items():
        owner = other if name == "r2" else acme
        room = await store.create_room(account_id=owner.id, name=name, participant_pin=ppin,
                                       moderator_pin=mpin)
        rooms[name] = room.id
    await store.add_access_number(number=NUMBER, country="DE", language=Language.DE)
    tokens: dict[str, str] = {}
    for label, account in (("acme", acme), ("other", other), ("revoked", acme)):
        secret = new_token()
        made = await store.create_api_token(account_id=account.id, name=label,
                                            token_hash=hash_token(secret),
                                            created_at=time.time())
        tokens[label] = secret
        if label == "revoked":
            await store.revoke_api_token(made.id, time.time())
    low, high = rtp_port_block()
    config = Config(sip=SipConfig(listen_host=LOOPBACK, listen_port=free_port(),
                                  transports=("udp",)),
                    rtp=RtpConfig(bind_host=LOOPBACK, port_low=low, port_high=high),
                    media=MediaConfig(workers=request.param),
                    web=WebConfig(listen="127.0.0.1:0"), db_path=db)
    controller = ConferenceController(
        store,
        ControllerConfig(node_id="test-node",
                         ivr=IvrTimers(language=1.0, pin_first_digit=3.0, pin_inter_digit=2.0)),
        load_prompts(short_prompts),
    )
    app = BridgeApp(config, controller)
    controller.attach(app)
    host, port = await app.start()
    health = ProcessHealth(app)
    health.start()
    web_app = create_app(store, config, service=controller, health=health,
                         metrics=RuntimeMetrics(app), node_id="test-node")
    running = await serve_app(web_app, config)
    assert running is not None
    phone = Phone((host, port))
    await phone.start()
    session = aiohttp.ClientSession()
    try:
        yield Web(app=app, controller=controller, store=store, phone=phone,
                  api=Api(session, running.url, tokens["acme"]), url=running.url, rooms=rooms,
                  tokens=tokens)
    finally:
        await session.close()
        await running.close()
        health.stop()
        await app.stop()
        await controller.drain()
        await phone.close()
        await store.close()


class Events:
    """A WebSocket client of /api/v1/events, reading in the background."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.items: list[dict[str, Any]] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                self.items.append(json.loads(message.data))

    def types(self) -> list[str]:
        return [i["type"] for i in self.items if i["type"] != "subscribed"]


def _caller_leg(view: dict[str, Any], caller: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in view["participants"] if p["caller"] == caller]
    assert len(found) == 1, view
    return found[0]


async def test_api_websocket_and_commands_on_a_live_conference(web: Web) -> None:
    api = web.api
    room = web.rooms["r1"]
    path = f"/api/v1/conferences/{room}/participants"
    async with api.session.ws_connect(
            f"{web.url}/api/v1/events?access_token={web.tokens['acme']}") as ws:
        events = Events(ws)
        await until(lambda: bool(events.items), "the subscription is confirmed")

        # the API lists each caller with the right role within 1 s of the join
        moderator = await web.join("r1", MODERATOR, moderator=True)
        joined = time.monotonic()
        while True:
            reply = await api.get(path)
            if reply.status == 200 and any(p["caller"] == MODERATOR
                                           for p in reply.body["participants"]):
                break
            assert time.monotonic() - joined < 1.0, reply.body
            await asyncio.sleep(0.02)
        participant = await web.join("r1", PARTICIPANT)
        joined = time.monotonic()
        while True:
            reply = await api.get(f"/api/v1/conferences/{room}")
            if len(reply.body.get("participants", [])) == 2:
                break
            assert time.monotonic() - joined < 1.0, reply.body
            await asyncio.sleep(0.02)
        check_schema(reply, "/api/v1/conferences/{room_id}", "get")
        view = reply.body
        assert _caller_leg(view, MODERATOR)["role"] == "moderator"
        p_leg = _caller_leg(view, PARTICIPANT)
        assert p_leg["role"] == "participant" and p_leg["state"] == "in_conference"
        assert p_leg["number_dialed"] == NUMBER and not p_leg["muted"]
        check_schema(await api.get("/api/v1/conferences"), "/api/v1/conferences", "get")

        # both talk; the moderator hears the participant's tone until the API mutes it
        stop = asyncio.Event()
        senders = [asyncio.create_task(stream_tone(moderator, 440.0, stop)),
                   asyncio.create_task(stream_tone(participant, 770.0, stop))]
        try:
            await until(lambda: events.types().count("talking_started") >= 2, "both talking")
            heard = web.heard[MODERATOR]
            heard.mark = len(heard.packets)
            await until(lambda: len(heard.packets) - heard.mark >= 50, "a second of audio")
            before = np.median(tone_levels(heard.audio(Codec.PCMU), [770.0]), axis=0)[0]
            assert before > -30.0, before
            muted = await api.post(f"{path}/{p_leg['id']}/mute")
            assert muted.status == 200, muted.body
            check_schema(muted, "/api/v1/conferences/{room_id}/participants/"
                                "{participant_id}/mute", "post")
            await asyncio.sleep(0.2)  # the frames mixed before the mute are on their way
            heard.mark = len(heard.packets)
            await until(lambda: len(heard.packets) - heard.mark >= 50, "a second of audio")
            after = np.median(tone_levels(heard.audio(Codec.PCMU), [770.0]), axis=0)[0]
            assert after < -50.0, after
            # muting the muted one again is the keypad's refusal: 409
            again = await api.post(f"{path}/{p_leg['id']}/mute")
            assert again.status in (200, 409)
        finally:
            stop.set()
            await asyncio.gather(*senders)

        # a kick ends that call with BYE; the record says kicked, by web
        kicked = await api.call("POST", f"{path}/{p_leg['id']}/kick", {"announce": False})
        assert kicked.status == 200, kicked.body
        assert (await participant.wait_ended(timeout=5.0)).reason == "remote_bye"
        [record] = await _closed_record(web, PARTICIPANT)
        assert record.leave_reason is LeaveReason.KICKED and record.ended_by == "web"
        await until(lambda: "participant_left" in events.types(), "the left event")
        [left] = [i for i in events.items if i["type"] == "participant_left"]
        assert left["by"] == "web" and left["reason"] == "kicked"
        kinds = events.types()
        assert kinds.index("participant_joined") < kinds.index("talking_started") \
            < kinds.index("participant_muted") < kinds.index("participant_left")
        seqs = [i["seq"] for i in events.items if "seq" in i]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert {i["room_id"] for i in events.items if "room_id" in i} == {room}

        # after a lock the next caller hears "this conference is locked"
        locked = await api.post(f"/api/v1/conferences/{room}/lock")
        assert locked.status == 200, locked.body
        assert "conference_locked" in [e["type"] for e in locked.body["events"]]
        late = await web.dial(LATE)
        await late.send_digits("2" + PINS["r1"][0] + "#")
        await late.wait_ended(timeout=10.0)
        rejected = await eventually(web.store.list_rejections, "the rejection")
        assert [r.reason for r in rejected] == [RejectionReason.LOCKED]
        tone = prompt_tone("conference_locked")
        pcm = web.heard[LATE].audio(Codec.PCMU)
        # the 0.1 s prompt tone falls anywhere: look at windows starting every 12.5 ms
        loudest = max(float(np.max(tone_levels(pcm[offset:], [tone]), initial=-90.0))
                      for offset in range(0, 800, 100))
        assert loudest > -30.0, loudest
        assert not web.in_room(LATE)
        moderator.hang_up()
        await ws.close()


async def _closed_record(web: Web, caller: str) -> list[Any]:
    async def probe() -> list[Any]:
        history = await web.store.call_history()
        return [r for r in history if caller in r.caller and r.left_at is not None]

    return await eventually(probe, f"{caller}'s closed record")


async def test_access_is_scoped_to_the_token(web: Web) -> None:
    await web.join("r1", MODERATOR, moderator=True)
    room = web.rooms["r1"]
    api = web.api
    assert (await api.get(f"/api/v1/conferences/{room}")).status == 200
    other = api.as_token(web.tokens["other"])
    for reply in (await other.get(f"/api/v1/conferences/{room}"),
                  await other.post(f"/api/v1/conferences/{room}/lock"),
                  await other.get(f"/api/v1/rooms/{room}")):
        assert reply.status == 404 and reply.content_type == "application/problem+json"
    assert (await other.get("/api/v1/conferences")).body == {"conferences": []}
    assert (await api.as_token(None).get(f"/api/v1/conferences/{room}")).status == 401
    assert (await api.as_token(web.tokens["revoked"]).get("/api/v1/conferences")).status == 401

    # /metrics of the running bridge parses with prometheus-client's own parser
    metrics = await api.as_token(None).get("/metrics")
    assert metrics.status == 200, metrics.body
    families = {f.name: f for f in text_string_to_metric_families(metrics.body)}
    assert families["bridge_calls_answered"].samples[0].value >= 1
    assert families["bridge_calls_active"].samples[0].value == 1
    legs = {s.labels["process"]: s.value for s in families["bridge_legs"].samples}
    assert sum(legs.values()) == 1
    assert families["bridge_rtp_packets_sent"].samples[0].value > 0
    lateness = families["bridge_tick_lateness_seconds"]
    [count] = [s.value for s in lateness.samples if s.name.endswith("_count")]
    assert count > 10
    workers = {s.labels["process"]
               for s in families["bridge_worker_tick_lateness_p99_seconds"].samples}
    assert workers == (set() if web.app.pool is None else {"worker-1"})
    if web.app.pool is not None:
        assert legs == {"main": 0, "worker-1": 1}  # the leg's media moved to the worker
        # the worker's RTP counts add up over the scrapes, on top of the main process's
        await asyncio.sleep(0.3)
        again = await api.as_token(None).get("/metrics")
        counted = {f.name: f.samples[0].value for f in text_string_to_metric_families(again.body)
                   if f.name in ("bridge_rtp_packets_received", "bridge_rtp_packets_sent")}
        assert counted["bridge_rtp_packets_received"] >= web.app.media.io.received
        assert counted["bridge_rtp_packets_sent"] > web.app.media.engine.counters.packets_sent
    health = await api.as_token(None).get("/healthz")
    assert health.status == 200 and health.body["checks"]["media_clock"]["ok"], health.body

    # the CLI on the running bridge
    base = ("--url", web.url, "--token", web.tokens["acme"])
    code, out, err = await acli("conferences", "list", *base)
    assert code == 0 and "r1" in out, err
    code, out, err = await acli("conferences", "show", "r1", *base)
    assert code == 0 and MODERATOR in out and "moderator" in out, err
    code, out, err = await acli("conferences", "mute", "r1", MODERATOR, *base)
    assert code == 0, err
    assert _caller_leg((await api.get(f"/api/v1/conferences/{room}")).body, MODERATOR)["muted"]
    assert (await acli("conferences", "lock", "r1", *base))[0] == 0
    assert (await api.get(f"/api/v1/conferences/{room}")).body["locked"] is True
    code, _, err = await acli("conferences", "show", str(room), "--url", web.url,
                              "--token", web.tokens["other"])
    assert code == 1 and err.count("\n") == 1 and "404" in err
    code, _, err = await acli("conferences", "show", "r1", "--url", web.url,
                              "--token", web.tokens["revoked"])
    assert code == 1 and "401" in err
    code, _, err = await acli("conferences", "mute", "r1", "--url", web.url)
    assert code == 2 and err.count("\n") == 1
    code, _, err = await acli("conferences", "kick", *base)
    assert code == 2 and err.count("\n") == 1
    assert (await acli("conferences", "end", "r1", *base))[0] == 0

    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.session.ws_connect(f"{web.url}/api/v1/events")
    assert refused.value.status == 401


async def test_healthz_turns_503_when_the_media_clock_stalls(web: Web) -> None:
    public = web.api.as_token(None)
    await until(lambda: web.app.media.ticks > 5, "the media clock ticking")
    ok = await public.get("/healthz")
    assert ok.status == 200 and ok.body["status"] == "ok", ok.body
    timer = web.app.media._timer  # stall the media clock on purpose: its next tick is dropped
    assert timer is not None
    timer.cancel()
    await asyncio.sleep(1.3)
    stalled = await public.get("/healthz")
    assert stalled.status == 503, stalled.body
    assert stalled.body["checks"]["media_clock"]["ok"] is False
    assert stalled.body["checks"]["event_loop"]["ok"] is True
    web.app.media._arm()  # the clock runs again: healthy again
    await asyncio.sleep(0.1)
    assert (await public.get("/healthz")).status == 200
