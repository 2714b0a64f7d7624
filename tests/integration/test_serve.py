"""``bridge serve`` as a real process: it answers calls, and SIGTERM hangs up every call with
BYE and exits 0."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from bridge.admin import demo
from tests.conftest import LOOPBACK, free_port, require_binary, rtp_port_block
from tests.interop.peers import run_sipp


async def test_sigterm_hangs_up_every_call_and_exits_0(tmp_path: Path) -> None:
    port = free_port()
    low, high = rtp_port_block()
    db = tmp_path / "b.sqlite3"
    number = (await asyncio.to_thread(demo, db)).number.number  # the calls wait in the IVR
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", "--sip-listen", f"{LOOPBACK}:{port}",
        "--rtp-ports", f"{low}-{high}", "--db", str(db),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        assert f"{LOOPBACK}:{port}" in banner, banner
        for i in range(2):
            (tmp_path / f"c{i}").mkdir()
        require_binary("sipp")  # fail (CI) or skip now, not after a timeout
        calls = [
            asyncio.create_task(run_sipp(
                "uac_wait_bye.xml", f"{LOOPBACK}:{port}", tmp=tmp_path / f"c{i}",
                service=number, keys={"rtp_port": str(free_port(even=True, span=2))},
                timeout=25))
            for i in range(2)
        ]
        assert proc.stderr is not None
        log_lines: list[str] = []
        while sum(" answered: " in line for line in log_lines) < 2:  # SIPp waits for the BYE
            line = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert line, "bridge exited before answering both calls: " + "".join(log_lines)
            log_lines.append(line.decode(errors="replace"))
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 15)
        results = [await c for c in calls]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    log = "".join(log_lines) + (await proc.stderr.read()).decode(errors="replace")
    assert code == 0, log
    for result in results:
        assert result.returncode == 0, result.stdout[-2000:] + result.logs
    assert "hanging up 2 call(s)" in log
