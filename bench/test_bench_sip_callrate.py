"""Call rate the bridge sustains against SIPp with zero failed calls (``sipp -r``).

Each step places ``rate * STEP_SECONDS`` calls of 1 s at ``rate`` calls/s against a real
``bridge serve`` process (to the demo access number: each call is answered and runs the IVR);
the figure is the highest rate whose step had no failed call.
With ``--benchmark-disable`` (CI) one small step runs, as a smoke test of the harness.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bridge.admin import demo
from tests.conftest import LOOPBACK, free_port, require_binary
from tests.interop.peers import run_sipp

RATES = (25, 50, 100, 150, 200, 300)
BASELINE_EXTRA_RATES = (500, 800)
STEP_SECONDS = 4


async def _step_through(port: int, service: str, rates: tuple[int, ...], seconds: int,
                        tmp_path: Path) -> dict[str, object]:
    sustained = 0
    steps: list[dict[str, int]] = []
    sink = free_port(even=True)
    for rate in rates:
        calls = rate * seconds
        step_dir = tmp_path / f"rate{rate}"
        step_dir.mkdir()
        result = await run_sipp(
            "uac_call.xml", f"{LOOPBACK}:{port}", tmp=step_dir, calls=calls, service=service,
            keys={"rtp_port": str(sink)}, pause_ms=1000, timeout=seconds * 3 + 20,
            extra=["-r", str(rate), "-l", str(rate * 3)],
        )
        steps.append({"rate": rate, "calls": calls, "sipp_exit": result.returncode})
        if result.returncode != 0:
            break
        sustained = rate
    return {"sustained_calls_per_s": sustained, "steps": steps}


async def _ramp(tmp_path: Path, rates: tuple[int, ...], seconds: int) -> dict[str, object]:
    """Against a real ``bridge serve``."""
    port = free_port()
    db = tmp_path / "b.sqlite3"
    number = await asyncio.to_thread(lambda: demo(db).number.number)
    config = tmp_path / "bridge.toml"
    config.write_text("[media]\nmax_participants = 0\n")  # measure SIP, not admission control
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", "--sip-listen", f"{LOOPBACK}:{port}",
        "--rtp-ports", "40000-49999", "--db", str(db), "--log-level", "WARNING",
        "--config", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 15)
        return await _step_through(port, number, rates, seconds, tmp_path)
    finally:
        proc.terminate()
        await proc.wait()


async def _ramp_sipp_uas(tmp_path: Path, rates: tuple[int, ...],
                         seconds: int) -> dict[str, object]:
    """Baseline in the same run: SIPp's built-in UAS (C++, no media, no IVR) takes the calls."""
    port = free_port()
    uas = await asyncio.create_subprocess_exec(
        require_binary("sipp"), "-sn", "uas", "-i", LOOPBACK, "-p", str(port), "-nostdin",
        "-bg", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        cwd=tmp_path,
    )
    await uas.wait()  # -bg: the UAS forks into the background and prints its pid
    try:
        return await _step_through(port, "uas", rates, seconds, tmp_path / "uas")
    finally:
        subprocess.run(["pkill", "-f", f"sipp -sn uas -i {LOOPBACK} -p {port}"], check=False)


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")
def test_sustained_call_rate(benchmark: BenchmarkFixture, tmp_path: Path) -> None:
    require_binary("sipp")
    if benchmark.disabled:
        smoke = asyncio.run(_ramp(tmp_path, (10,), 2))
        assert smoke["sustained_calls_per_s"] == 10, smoke
        return
    outcome: dict[str, object] = {}

    def run() -> None:
        outcome["bridge"] = asyncio.run(_ramp(tmp_path, RATES, STEP_SECONDS))

    # One round: the ramp itself is the measurement (pytest-benchmark is untyped).
    benchmark.pedantic(run, rounds=1, iterations=1)  # type: ignore[no-untyped-call]
    (tmp_path / "uas").mkdir()
    outcome["sipp_uas_baseline"] = asyncio.run(
        _ramp_sipp_uas(tmp_path, RATES + BASELINE_EXTRA_RATES, STEP_SECONDS))
    benchmark.extra_info.update(outcome)
    print(f"\nsustained call rate: {outcome}")
    bridge = outcome["bridge"]
    assert isinstance(bridge, dict)
    if not bridge["sustained_calls_per_s"]:
        pytest.fail(f"no step passed: {outcome}")
