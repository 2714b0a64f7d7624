"""The player against a real bridge on loopback: a load replay of two calls (cut short from
the checked-in real traces) keeps their relative start times under --speed, and --repeat plays
them again with fresh identities."""

from __future__ import annotations

from pathlib import Path

from bridge.replay.player import replay
from bridge.replay.trace import _frames, read_trace
from bridge.runtime.app import BridgeApp
from tests.conftest import LOOPBACK
from tests.interop.conftest import bridge_config
from tests.unit.test_replay_trace import TCP, UDP, pcap

GAP = 0.8  # seconds between the two calls' INVITEs in the derived trace


def short_call(data: bytes, shift: float, hold: float = 1.0) -> list[tuple[float, bytes]]:
    """The call's frames up to ``hold`` s after the answer, its BYE and 200 moved there."""
    call = read_trace(data).invite_calls()[0]
    answer = call.answer_time
    assert answer is not None
    out = []
    for when, _, frame in _frames(data):
        if b"CSeq: 2 BYE" in frame:
            out.append((answer + hold + (0.01 if b"SIP/2.0 200" in frame else 0.0), frame))
        elif when <= answer + hold:
            out.append((when, frame))
    start = min(t for t, _ in out)
    return [(t - start + shift, f) for t, f in out]


async def test_a_load_replay_keeps_relative_start_times_and_repeats_with_fresh_ids(
        tmp_path: Path) -> None:
    frames = sorted(short_call(UDP, 1000.0) + short_call(TCP, 1000.0 + GAP))
    trace = read_trace(pcap(1, frames))
    calls = trace.invite_calls()
    assert [c.transport for c in calls] == ["UDP", "TCP"]
    app = BridgeApp(bridge_config(tmp_path))
    await app.start()
    try:
        results = await replay(calls, (LOOPBACK, app.local[1]), speed=2.0, repeat=2,
                               wav_dir=tmp_path / "wav")
    finally:
        await app.stop()
    assert [(r.repeat, r.transport) for r in results] == [
        (1, "UDP"), (1, "TCP"), (2, "UDP"), (2, "TCP")]
    for result in results:
        assert result.statuses == ["200 INVITE", "200 BYE"] == result.trace_statuses
        assert result.ended_by == "caller" == result.trace_ended_by
        assert result.duration is not None and 0.4 < result.duration < 1.5  # 1 s at speed 2
        assert result.packets_sent > 10 and result.wav is not None
    for first, second in (results[0:2], results[2:4]):
        assert abs(second.trace_start - GAP) < 0.05
        assert abs((second.start - first.start) - GAP / 2) < 0.15  # speed 2
    call_ids = {r.call_id for r in results}
    assert len(call_ids) == 4 and not call_ids & {c.call_id for c in calls}
    assert len({r.wav for r in results}) == 4
