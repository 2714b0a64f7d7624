"""report: stop criteria, capacity, table, JSON and the PNG writer."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from bridge.benchmark import report
from bridge.benchmark.procstats import ProcSample


def _step(system: str, n: int, p99: float, cpu: float, loss: float = 0.0) -> report.StepResult:
    return report.StepResult(
        system=system, participants=n, duration_s=5.0, ticks=250, lateness_p50_ms=0.4,
        lateness_p99_ms=p99, lateness_max_ms=2 * p99, packets_sent=250 * n,
        packets_received=250 * n, packets_expected=250 * n, loss_pct=loss, cpu_pct=cpu,
        cpu_us_per_participant_tick=cpu * 200 / n, rss_bytes=40 * 2**20 + n * 10_000,
    )


RELAY = report.CapacityRun(system="relay", rooms_of=3, talkers=3, steps=(
    _step("relay", 100, 1.0, 10.0), _step("relay", 400, 1.5, 40.0),
    _step("relay", 800, 2.0, 70.0), _step("relay", 1200, 6.0, 90.0),
))
BRIDGE = report.CapacityRun(system="bridge", rooms_of=3, talkers=3, steps=(
    _step("bridge", 100, 1.0, 20.0), _step("bridge", 200, 1.0, 30.0, loss=0.1),
    _step("bridge", 400, 1.0, 50.0),
))


def test_stop_criteria_bounds_are_inclusive() -> None:
    criteria = report.StopCriteria()
    assert criteria.passes(_step("x", 10, 4.99, 84.9, loss=0.099))
    assert criteria.violations(_step("x", 10, 5.0, 10.0)) == ["p99 lateness 5.00 ms >= 5 ms"]
    assert len(criteria.violations(_step("x", 10, 5.0, 85.0, loss=0.1))) == 3


def test_capacity_is_the_last_passing_step_before_the_first_failure() -> None:
    assert RELAY.capacity == 800
    assert RELAY.stop_reason is not None and RELAY.stop_reason.startswith("1200 participants")
    assert BRIDGE.capacity == 100  # the 400 step passes but comes after a failure
    assert "loss" in (BRIDGE.stop_reason or "")
    # median over passing steps: 10*200/100=20, 40*200/400=20, 70*200/800=17.5 -> 20
    assert RELAY.cpu_us_per_participant_tick == pytest.approx(20.0)


def test_make_step_combines_proc_samples_and_loadgen_window() -> None:
    before = ProcSample(wall=100.0, cpu_by_pid={1: 10.0, 2: 1.0}, rss_bytes=0)
    after = ProcSample(wall=105.0, cpu_by_pid={1: 13.0, 2: 1.5}, rss_bytes=300 * 2**20)
    window = {"packets_sent": 50_000, "packets_received": 49_990, "packets_expected": 50_000,
              "loss_pct": 0.02}
    step = report.make_step(system="relay", participants=200, before=before, after=after,
                            ticks=250, lateness_ms=(0.3, 1.2, 4.0), loadgen_window=window)
    assert step.cpu_pct == pytest.approx(60.0)  # the busiest process (pid 1: 3 s in 5 s)
    # ... while the cost per participant-tick counts every process: 3.5 s in all.
    assert step.cpu_us_per_participant_tick == pytest.approx(3.5 / (200 * 250) * 1e6)
    assert step.rss_per_participant_bytes == pytest.approx(300 * 2**20 / 200)
    assert step.loss_pct == 0.02 and step.lateness_p99_ms == 1.2


def test_table_lists_every_step_and_marks_failures() -> None:
    table = report.format_table([BRIDGE, RELAY])
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["system", "parts", "p50"]
    step_lines = [line for line in lines if line.startswith(("bridge ", "relay "))]
    assert len(step_lines) == 7
    assert [line.endswith("*") for line in step_lines] == [
        False, True, False, False, False, False, True]
    assert "relay: capacity 800 participants" in table


def test_json_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "cap.json"
    report.write_json(path, [BRIDGE, RELAY], machine="test")
    doc = json.loads(path.read_text())
    assert doc["machine"] == "test"
    assert [run["capacity"] for run in doc["runs"]] == [100, 800]
    assert doc["runs"][1]["steps"][3]["lateness_p99_ms"] == 6.0
    assert doc["runs"][0]["criteria"]["max_cpu_pct"] == 85.0


def _read_png(data: bytes) -> tuple[int, int, np.ndarray]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks = 8, []
    while offset < len(data):
        (length,) = struct.unpack_from("!I", data, offset)
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack_from("!I", data, offset + 8 + length)
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        offset += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, _, _, interlace = struct.unpack("!IIBBBBB", chunks[0][1])
    assert (depth, colour, interlace) == (8, 2, 0)
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert not rows[:, 0].any()  # filter type 0 on every scanline
    return width, height, rows[:, 1:].reshape(height, width, 3)


def test_encode_png_is_a_valid_png_of_the_right_size_and_pixels() -> None:
    image = np.zeros((3, 5, 3), dtype=np.uint8)
    image[1, 2] = (255, 0, 7)
    width, height, pixels = _read_png(report.encode_png(image))
    assert (width, height) == (5, 3)
    assert np.array_equal(pixels, image)
    with pytest.raises(ValueError):
        report.encode_png(np.zeros((3, 5), dtype=np.uint8))


def test_capacity_png_has_both_curves(tmp_path: Path) -> None:
    path = tmp_path / "cap.png"
    data = report.render_capacity_png(path, [BRIDGE, RELAY], width=800, height=400)
    assert path.read_bytes() == data
    width, height, pixels = _read_png(data)
    assert (width, height) == (800, 400)
    colours = {tuple(int(c) for c in p) for p in pixels.reshape(-1, 3)}
    assert (31, 119, 180) in colours  # bridge
    assert (255, 127, 14) in colours  # relay
    assert (214, 39, 40) in colours  # stop limits
