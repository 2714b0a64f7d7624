"""``bridge bench capacity`` end to end on 127.0.0.1, at a tiny scale: the bridge worker takes
real SIP calls from the load generator (through the IVR with PINs as RFC 4733 digits), the
runner measures each step and the relay baseline, and writes the table, JSON and PNG; and the
bridge's admission control answers calls beyond its limit with 503."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.benchmark.bridge_worker import BridgeWorkerConfig, BridgeWorkerProcess
from bridge.benchmark.capacity import CapacityOptions, main, run_capacity
from bridge.benchmark.loadgen import LoadGenConfig, LoadGenerator
from bridge.benchmark.report import StopCriteria

# A shared 2-core CI machine: judge the tiny steps by generous bounds, the logic not the speed.
LENIENT = StopCriteria(max_p99_lateness_ms=200.0, max_loss_pct=5.0, max_cpu_pct=100.0)


def test_small_ramp_through_the_ivr_with_baseline() -> None:
    options = CapacityOptions(steps=(6,), max_participants=12, step_seconds=1.0,
                              settle_seconds=0.3, join_timeout=30.0, criteria=LENIENT)
    lines: list[str] = []
    report = run_capacity(options, lines.append)
    bridge, relay = report.bridge, report.relay
    assert relay is not None
    assert [s.participants for s in bridge.steps] == [6, 12]
    assert [s.participants for s in relay.steps] == [6, 12]
    for s in bridge.steps:
        assert s.failed_calls == 0
        assert 35 <= s.ticks <= 65  # one second of 20 ms ticks
        assert s.packets_expected > 0 and s.loss_pct < 5.0
        assert s.cpu_pct > 0 and s.cpu_us_per_participant_tick > 0
        assert 0 < s.lateness_p50_ms <= s.lateness_p99_ms <= s.lateness_max_ms
        assert s.rss_bytes > 10 * 2**20
    assert bridge.capacity == 12
    assert report.ratio is not None and report.ratio > 0
    assert report.meta["recommended_max_participants"] == 9
    assert any("12 joined" in line for line in lines)


def test_main_writes_table_json_and_png(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    options = CapacityOptions(steps=(3,), max_participants=3, step_seconds=1.0,
                              settle_seconds=0.2, routing="direct", criteria=LENIENT)
    json_path, png_path = tmp_path / "cap.json", tmp_path / "cap.png"
    assert main(options, json_path=str(json_path), plot_path=str(png_path)) == 0
    out = capsys.readouterr().out
    assert "bridge: capacity 3 participants" in out
    assert "relay: capacity 3 participants" in out
    document = json.loads(json_path.read_text(encoding="utf-8"))
    assert [r["system"] for r in document["runs"]] == ["bridge", "relay"]
    assert document["runs"][0]["steps"][0]["participants"] == 3
    assert document["options"]["routing"] == "direct"
    assert document["recommended_max_participants"] == 2
    assert png_path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_calls_beyond_the_limit_get_503() -> None:
    bridge = BridgeWorkerProcess(BridgeWorkerConfig(rooms=3, routing="direct",
                                                    max_participants=4, retry_after=7))
    try:
        gen = LoadGenerator(LoadGenConfig(mode="sip", rooms_of=3, talkers=1, call_rate=20.0))
        try:
            reply = gen.add(6, rooms=dict(enumerate(bridge.rooms)), timeout=20.0)
            assert reply["states"] == {"connected": 4, "failed": 2}
            assert gen.stats()["failures"] == {"503": 2}
            stats = bridge.stats()
            assert stats["legs"] == 4
            assert stats["calls_rejected"] == 2
            gen.hangup_all()
        finally:
            gen.close()
    finally:
        bridge.close()


def test_scaling_ramps_one_and_two_media_workers() -> None:
    """--scaling: the bridge with one media worker, then with two over doubled steps; every
    caller's media sits in a worker, the stats count the workers' CPU, ticks and legs."""
    options = CapacityOptions(steps=(3,), max_participants=6, step_seconds=1.0,
                              settle_seconds=0.3, join_timeout=30.0, criteria=LENIENT,
                              scaling=True, baseline=False)
    lines: list[str] = []
    report = run_capacity(options, lines.append)
    assert report.scaled is not None
    assert [r.system for r in report.runs] == ["bridge-1w", "bridge-2w"]
    assert [s.participants for s in report.bridge.steps] == [3, 6]
    assert [s.participants for s in report.scaled.steps] == [6, 12]
    for step in (*report.bridge.steps, *report.scaled.steps):
        assert step.failed_calls == 0 and step.loss_pct < 5.0
        assert 35 <= step.ticks <= 65
        assert step.cpu_us_per_participant_tick > 0
    assert report.scaling is None  # the one-worker ramp never failed: no capacity to compare
    assert any("bridge-2w: 12 participants: 12 joined" in line for line in lines)
    assert report.meta["options"]["workers"] == 1


def test_stats_of_a_bridge_with_workers_count_the_workers() -> None:
    bridge = BridgeWorkerProcess(BridgeWorkerConfig(rooms=2, routing="direct", workers=2))
    try:
        assert len(bridge.worker_pids) == 2
        gen = LoadGenerator(LoadGenConfig(mode="sip", rooms_of=3, talkers=3, call_rate=20.0))
        try:
            reply = gen.add(6, rooms=dict(enumerate(bridge.rooms)), timeout=20.0)
            assert reply["states"] == {"connected": 6}
            stats = bridge.stats(mark=True)
            assert stats["legs"] == 6 and stats["joined"] == 6
            workers = stats["workers"]
            assert sorted(w["pid"] for w in workers) == sorted(bridge.worker_pids)
            assert sorted(w["legs"] for w in workers) == [3, 3]  # one room each
            assert stats["cpu_seconds"] >= sum(w["cpu_seconds"] for w in workers) > 0
            assert stats["worker_datagrams_received"] == sum(w["packets_received"]
                                                             for w in workers) > 0
            gen.hangup_all()
        finally:
            gen.close()
    finally:
        bridge.close()
