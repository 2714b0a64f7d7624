"""``bridge serve`` on a SIP port that is taken says why it cannot listen (issue 14: with
uvloop the reason was lost, ``cannot listen on 0.0.0.0:5060: None``), and exits 1."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest

from tests.conftest import LOOPBACK, free_port, rtp_port_block


@pytest.mark.parametrize("kind", [socket.SOCK_DGRAM, socket.SOCK_STREAM], ids=["udp", "tcp"])
async def test_a_taken_sip_port_is_reported_with_its_reason(tmp_path: Path, kind: int) -> None:
    port = free_port()
    low, high = rtp_port_block()
    with socket.socket(socket.AF_INET, kind) as taken:
        taken.bind((LOOPBACK, port))
        if kind == socket.SOCK_STREAM:
            taken.listen()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "serve", "--sip-listen", f"{LOOPBACK}:{port}",
            "--rtp-ports", f"{low}-{high}", "--db", str(tmp_path / "b.sqlite3"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    text = err.decode(errors="replace")
    assert proc.returncode == 1, text
    line = next(x for x in text.splitlines() if "cannot listen on" in x)
    assert f"cannot listen on {LOOPBACK}:{port}: " in line
    assert "address already in use" in line.lower(), line
    assert not line.rstrip().endswith("None")
