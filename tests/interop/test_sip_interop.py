"""The SIP core against real, independent SIP peers over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import numpy as np

from bridge.runtime.app import BridgeApp
from bridge.sip.endpoint import Credentials
from bridge.sip.events import CallAnswered, CallEnded, CallEstablished, CallOffered, Event
from tests.conftest import LOOPBACK, free_port, require_binary, wait_until_bound
from tests.interop.conftest import bridge_config
from tests.interop.peers import Baresip, run_sipp, write_tone_wav


class RtpSink(asyncio.DatagramProtocol):
    """Records (arrival time, RTP header) of every packet the bridge sends to a port."""

    def __init__(self) -> None:
        self.packets: list[tuple[float, int, int, int]] = []  # (arrival, seq, ts, pt)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(data) >= 12 and data[0] >> 6 == 2 and not 192 <= data[1] <= 223:
            _, pt, seq, ts = struct.unpack_from("!BBHI", data)
            self.packets.append((asyncio.get_running_loop().time(), seq, ts, pt & 0x7F))


def sip_events(app: BridgeApp) -> list[Event]:
    seen: list[Event] = []
    app.sip_listeners.append(seen.append)
    return seen


async def _call_with_rtp_check(bridge: BridgeApp, tmp_path: Path, transport: str) -> None:
    loop = asyncio.get_running_loop()
    rtp_port = free_port(even=True, span=2)
    sink = RtpSink()
    sink_transport, _ = await loop.create_datagram_endpoint(
        lambda: sink, local_addr=(LOOPBACK, rtp_port))
    events = sip_events(bridge)
    try:
        result = await run_sipp(
            "uac_call.xml", f"{LOOPBACK}:{bridge.local[1]}", tmp=tmp_path, transport=transport,
            service="1000", keys={"rtp_port": str(rtp_port)}, pause_ms=2000,
        )
    finally:
        sink_transport.close()
    assert result.returncode == 0, result.stdout[-3000:] + result.logs
    kinds = [type(e) for e in events]
    assert CallOffered in kinds and CallEstablished in kinds
    ended = [e for e in events if isinstance(e, CallEnded)]
    assert [e.reason for e in ended] == ["remote_bye"]
    # The bridge sent RTP every 20 ms for the whole call (checked where it arrived).
    packets = sink.packets
    assert len(packets) >= 80, f"only {len(packets)} RTP packets in a 2 s call"
    seqs = np.array([p[1] for p in packets], dtype=np.int64)
    stamps = np.array([p[2] for p in packets], dtype=np.int64)
    assert np.all(np.diff(seqs) % 65536 == 1), "sequence numbers must be continuous"
    assert np.all(np.diff(stamps) % 2**32 == 160), "timestamps must advance 160 per packet"
    assert {p[3] for p in packets} == {0}, "PCMU (the offer's first codec) is sent"
    arrivals = np.array([p[0] for p in packets])
    span = arrivals[-1] - arrivals[0]
    # One packet per 20 ms on average: the media clock runs on absolute deadlines.
    assert abs(span / (len(packets) - 1) - 0.020) < 0.002


async def test_sipp_calls_over_udp(bridge: BridgeApp, tmp_path: Path) -> None:
    await _call_with_rtp_check(bridge, tmp_path, "u1")


async def test_sipp_calls_over_tcp(bridge: BridgeApp, tmp_path: Path) -> None:
    await _call_with_rtp_check(bridge, tmp_path, "t1")


async def test_sipp_options_keepalive(bridge: BridgeApp, tmp_path: Path) -> None:
    result = await run_sipp("options.xml", f"{LOOPBACK}:{bridge.local[1]}", tmp=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.logs


async def test_invite_from_outside_allowed_networks_gets_403(tmp_path: Path) -> None:
    app = BridgeApp(bridge_config(tmp_path, allowed_networks=("10.0.0.0/8",)))
    await app.start()
    try:
        result = await run_sipp("uac_forbidden.xml", f"{LOOPBACK}:{app.local[1]}",
                                tmp=tmp_path, keys={"rtp_port": str(free_port(even=True))})
        assert result.returncode == 0, result.stdout[-3000:] + result.logs
        assert app.counters.calls_answered == 0
        # OPTIONS keepalives are still answered for everyone.
        result = await run_sipp("options.xml", f"{LOOPBACK}:{app.local[1]}", tmp=tmp_path)
        assert result.returncode == 0, result.stdout[-3000:] + result.logs
    finally:
        await app.stop()


async def test_bridge_dials_a_trunk_that_demands_digest_auth(
    bridge: BridgeApp, tmp_path: Path
) -> None:
    sipp_port = free_port()
    rtp_port = free_port(even=True, span=2)
    events = sip_events(bridge)
    require_binary("sipp")  # fail (CI) or skip now, not after a timeout
    sipp = asyncio.create_task(run_sipp(
        "uas_auth.xml", None, tmp=tmp_path, port=sipp_port,
        keys={"user": "bridge-trunk", "password": "s3cret!", "rtp_port": str(rtp_port)},
        timeout=20,
    ))
    await wait_until_bound(sipp_port)
    call = await bridge.dial(f"sip:+4930999@{LOOPBACK}:{sipp_port}", "dialout",
                             credentials=Credentials("bridge-trunk", "s3cret!"))
    for _ in range(200):
        if any(isinstance(e, CallAnswered) and e.call == call for e in events):
            break
        if sipp.done():
            break
        await asyncio.sleep(0.025)
    assert any(isinstance(e, CallAnswered) and e.call == call for e in events), \
        (await sipp).logs if sipp.done() else "no answer"
    assert call in bridge.media.engine
    bridge.hangup(call)
    result = await sipp
    assert result.returncode == 0, result.stdout[-3000:] + result.logs
    assert [e.reason for e in events if isinstance(e, CallEnded)] == ["local_bye"]


async def test_baresip_calls_and_hangs_up_cleanly(bridge: BridgeApp, tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    write_tone_wav(wav, 440.0, 30.0)
    events = sip_events(bridge)
    phone = Baresip(tmp_path / "baresip", wav)
    await phone.start()
    try:
        await phone.command("dial", f"sip:1000@{LOOPBACK}:{bridge.local[1]}")
        await phone.wait_event("CALL_ESTABLISHED")
        await asyncio.sleep(1.0)
        await phone.command("hangup")
        await phone.wait_event("CALL_CLOSED")
        for _ in range(100):
            if any(isinstance(e, CallEnded) for e in events):
                break
            await asyncio.sleep(0.02)
    finally:
        await phone.stop()
    assert [e.reason for e in events if isinstance(e, CallEnded)] == ["remote_bye"]
    assert not bridge.legs, "the leg is gone after the hangup"

