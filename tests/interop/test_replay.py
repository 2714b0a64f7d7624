"""Capture and replay with real peers: ``bridge serve --capture`` recording real SIPp calls
(SIP over UDP and TCP, RTP with ``capture_rtp``), read back with the trace reader."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from bridge.replay.player import replay
from bridge.replay.trace import read_trace
from bridge.runtime.app import BridgeApp
from bridge.runtime.controller import ConferenceController, ControllerConfig
from tests.conftest import LOOPBACK, free_port, require_binary, rtp_port_block, wait_until_bound
from tests.interop.capture import require_capture
from tests.interop.conftest import bridge_config
from tests.interop.pcapgen import CallStream, digits_at, write_stream_pcap
from tests.interop.peers import run_sipp
from tests.interop.test_conference_e2e import (  # noqa: F401 (the dialin fixture)
    NUMBER,
    Dialin,
    closed_records,
    dialin,
    join_phone,
    live_count,
    prepare_store,
    sipp_caller,
    start_phone,
    until,
    wait_for_line,
)

ROOT = Path(__file__).resolve().parents[2]
PIN = "583902"


async def sipp_pin_call(target: str, tmp: Path, name: str, transport: str,
                        hold_ms: int = 2500) -> None:
    workdir = tmp / name
    workdir.mkdir()
    stream = CallStream(seconds=hold_ms / 1000 + 2, tone_hz=440.0,
                        digits=digits_at("2", 0.5) + digits_at(PIN + "#", 0.9))
    await asyncio.to_thread(write_stream_pcap, workdir / "call.pcap", stream)
    require_binary("sipp")
    result = await run_sipp("conf_caller.xml", target, tmp=workdir, service=NUMBER,
                            transport=transport, keys={"te_pt": "101", "caller": f"+49{name}"},
                            pause_ms=hold_ms, timeout=20.0)
    assert result.returncode == 0, result.stdout[-2000:] + result.logs


async def test_serve_with_capture_records_real_udp_and_tcp_calls(tmp_path: Path) -> None:
    db = tmp_path / "bridge.sqlite3"
    store, account = await prepare_store(db)
    await store.create_room(account_id=account.id, name="Cap", participant_pin=PIN,
                            moderator_pin="902716")
    await store.close()
    config = tmp_path / "bridge.toml"
    config.write_text("[debug]\ncapture_rtp = true\n")
    capture = tmp_path / "bridge.pcap"
    port, rtp = free_port(), rtp_port_block()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "serve", "--db", str(db), "--config", str(config),
            "--sip-listen", f"{LOOPBACK}:{port}", "--rtp-ports", f"{rtp[0]}-{rtp[1]}",
            "--capture", str(capture), stdin=asyncio.subprocess.DEVNULL, stdout=out,
            stderr=asyncio.subprocess.STDOUT, cwd=ROOT)
    try:
        await wait_for_line(log, "SIP on", proc)
        target = f"{LOOPBACK}:{port}"
        await asyncio.gather(sipp_pin_call(target, tmp_path, "udp", "u1"),
                             sipp_pin_call(target, tmp_path, "tcp", "t1"))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
    trace = read_trace(capture.read_bytes())
    calls = trace.invite_calls()
    assert sorted(c.transport for c in calls) == ["TCP", "UDP"]
    for call in calls:
        assert [r.label for r in call.messages if not r.label.startswith("1")] == [
            "INVITE", "200 INVITE", "ACK", "BYE", "200 BYE"], call.transport
        assert call.caller[1] != port and call.messages[0].dst == (LOOPBACK, port)
        assert "".join(d.digit for d in call.digits()) == "2" + PIN + "#"
        assert len(call.audio_out()) > 50 and len(call.rtp_in) > 50


# -- replaying the checked-in traces against a fresh bridge -----------------------------------

TRACES = ROOT / "tests" / "data" / "traces"


async def replay_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "replay", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def sipp_from_trace(trace: Path, outdir: Path, target: str, transport: str) -> None:
    """``bridge replay --to-sipp`` then the scenario run by real SIPp to its end."""
    code, out, err = await replay_cli("--to-sipp", str(trace), str(outdir))
    assert code == 0, out + err
    require_binary("sipp")
    result = await run_sipp(str(outdir / "scenario.xml"), target, tmp=outdir,
                            transport=transport, timeout=25.0)
    assert result.returncode == 0, result.stdout[-2000:] + result.logs


async def test_checked_in_udp_and_tcp_traces_replay_like_the_trace(
        dialin: Dialin, tmp_path: Path) -> None:  # noqa: F811 (the fixture)
    """The traces of real SIPp calls replay over UDP and TCP (bridge replay as a subprocess,
    JSON and WAV written), and the --to-sipp scenario of each runs with real SIPp to its end;
    all four callers get into the room with the trace's PIN."""
    room = await dialin.room("Trace", PIN, "902716")
    report = tmp_path / "report.json"
    wavs = tmp_path / "wavs"
    (code, out, err), (code_tcp, out_tcp, err_tcp), _, _ = await asyncio.gather(
        replay_cli(str(TRACES / "sipp_udp.pcap"), "--target", dialin.target,
                   "--json", str(report), "--wav-dir", str(wavs)),
        replay_cli(str(TRACES / "sipp_tcp.pcap"), "--target", dialin.target),
        sipp_from_trace(TRACES / "sipp_udp.pcap", tmp_path / "sipp-udp", dialin.target, "u1"),
        sipp_from_trace(TRACES / "sipp_tcp.pcap", tmp_path / "sipp-tcp", dialin.target, "t1"))
    assert code == 0, out + err
    assert code_tcp == 0, out_tcp + err_tcp
    assert "1 of 1 calls behaved like the trace" in out_tcp
    [call] = json.loads(report.read_text())["calls"]
    assert call["verdict"] == "same" and call["transport"] == "UDP"
    assert call["statuses"] == ["200 INVITE", "200 BYE"] == call["trace_statuses"]
    assert "".join(d["digit"] for d in call["digits_sent"]) == "2" + PIN + "#"
    assert call["audio_received"]["seconds"] > 3 and not call["audio_received"]["silent"]
    assert Path(call["audio_received"]["wav"]).stat().st_size > 40000
    # every caller got into the room with the trace's PIN (a record per joined leg)
    records = await until(lambda: closed_records(dialin, room, 4), "four closed records", 5)
    assert len(records) == 4 and all("+498900000440" in r.caller for r in records)


# -- acceptance: a three-party conference captured, then replayed against a fresh bridge -------


@contextlib.asynccontextmanager
async def dialin_bridge(tmp: Path, capture: Path | None = None) -> AsyncIterator[Dialin]:
    tmp.mkdir()
    config = bridge_config(tmp)
    config = dataclasses.replace(
        config, media=dataclasses.replace(config.media, max_lateness_p99_ms=0.0),
        debug=dataclasses.replace(config.debug, capture_path=str(capture or ""),
                                  capture_rtp=True))
    store, account = await prepare_store(config.db_path)
    # Every replayed caller comes from 127.0.0.1: six of them in the IVR at once would pass
    # the per-source IVR limit (4), which is not what this test is about.
    controller = ConferenceController(store, ControllerConfig(node_id="replay",
                                                              ivr_calls_per_source=0))
    app = BridgeApp(config, controller)
    await app.start()
    try:
        yield Dialin(app, controller, store, account, tmp)
    finally:
        await app.stop()
        await controller.drain()
        await store.close()


CONF_PIN = "48151623"


async def test_a_captured_three_party_conference_replays_against_a_fresh_bridge(
        tmp_path: Path) -> None:
    """SIPp (RFC 4733 on PT 101), SIPp (PT 96, as linphone offers it) and baresip join one
    room on a bridge started with a capture; the trace, replayed against a fresh bridge with
    the same room at speed 1 and 2, gets the same responses for every call, every replayed
    caller gets in with the trace's PIN and receives audio."""
    require_capture()
    capture = tmp_path / "conference.pcap"
    async with dialin_bridge(tmp_path / "first", capture) as first:
        room = await first.room("Weekly", CONF_PIN, "97531864")
        phone = await start_phone(first, "baresip", 1000.0)
        try:
            a = await sipp_caller(first, "sipp-pt101", tone_hz=440.0, keys=CONF_PIN + "#",
                                  hold=13.0)
            c = await sipp_caller(first, "sipp-pt96", tone_hz=1700.0, keys=CONF_PIN + "#",
                                  te_pt=96, hold=13.0)
            await join_phone(first, phone, CONF_PIN)
            await until(lambda: live_count(first, room, 3), "3 legs in the room")
            await a.finished_ok()
            await c.finished_ok()
            await phone.hang_up()
        finally:
            await phone.baresip.stop()
        await until(lambda: closed_records(first, room, 3), "3 closed call records")

    trace = read_trace(capture.read_bytes())
    calls = trace.invite_calls()
    assert len(calls) == 3
    assert sorted(c.event_pt or 0 for c in calls) == [96, 101, 101]
    async with dialin_bridge(tmp_path / "second") as second:
        room = await second.room("Weekly", CONF_PIN, "97531864")
        target = (LOOPBACK, second.app.local[1])
        # both speeds at once (two players, six callers in the room): the test stays short
        runs = await asyncio.gather(replay(calls, target, speed=1.0),
                                    replay(calls, target, speed=2.0))
        for speed, results in zip((1.0, 2.0), runs, strict=True):
            for result in results:
                assert result.verdict == "same", f"speed {speed}:\n{result.text()}"
                assert result.statuses == result.trace_statuses
                assert "".join(d["digit"] for d in result.digits_sent).endswith(CONF_PIN + "#")
                assert result.audio_seconds > 2 and not result.audio_silent, result.text()
        fast = [r.duration or 0.0 for r in runs[1]]
        slow = [r.duration or 0.0 for r in runs[0]]
        assert all(0.4 < f / s < 0.6 for f, s in zip(fast, slow, strict=True)), (fast, slow)
        records = await until(functools.partial(closed_records, second, room, 6),
                              "6 closed call records (the PIN was accepted every time)")
        assert len(records) == 6
        assert await second.rejections() == []


async def test_a_target_that_answers_otherwise_exits_1_with_the_difference(
        tmp_path: Path) -> None:
    """A bridge that refuses the caller's network answers 403: the report says so, exit 1."""
    config = bridge_config(tmp_path)
    config = dataclasses.replace(
        config, sip=dataclasses.replace(config.sip, allowed_networks=("192.0.2.0/24",)))
    app = BridgeApp(config)
    await app.start()
    try:
        report = tmp_path / "report.json"
        code, out, err = await replay_cli(str(TRACES / "sipp_udp.pcap"), "--target",
                                          f"{LOOPBACK}:{app.local[1]}", "--json", str(report))
    finally:
        await app.stop()
    assert code == 1, out + err
    assert "0 of 1 calls behaved like the trace" in out and "DIFFERS" in out
    [call] = json.loads(report.read_text())["calls"]
    assert call["statuses"] == ["403 INVITE"] and call["verdict"] == "differs"
    assert "responses ['403 INVITE'] instead of ['200 INVITE', '200 BYE']" in call["differences"]
    assert call["digits_sent"] == [] and call["packets_sent"] == 0


async def test_the_player_answers_what_the_target_sends_inside_the_dialog(
        tmp_path: Path) -> None:
    """A SIPp target re-INVITEs, sends OPTIONS and INFO, then BYE: the replayed caller answers
    each (SIPp exits 0 only then); the report says the target ended the call, unlike the
    trace, so the call differs."""
    port = free_port()
    require_binary("sipp")
    target = asyncio.create_task(run_sipp("uas_dialog_requests.xml", None, tmp=tmp_path,
                                          port=port, timeout=20.0))
    await wait_until_bound(port)
    calls = read_trace((TRACES / "sipp_udp.pcap").read_bytes()).invite_calls()
    [result] = await replay(calls, (LOOPBACK, port))
    sipp = await target
    assert sipp.returncode == 0, sipp.stdout[-2000:] + sipp.logs
    assert result.statuses == ["200 INVITE"] and result.ended_by == "target"
    assert result.verdict == "differs" and result.duration is not None
    assert result.duration < 5.0  # the target's BYE ended it, not the trace's at 8 s
