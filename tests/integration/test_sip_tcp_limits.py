"""Issue 14 acceptance: TCP limits. 1,100 idle connections from one source do not lock out a
new client from another source, which still completes a call (SIPp over TCP); the idle ones
are closed after the (shortened) idle timeout, while a connection carrying a dialog and one
sending RFC 5626 CRLF keepalives stay open. The caps and the reserve are counted exactly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest

from bridge.config import Config, RtpConfig, SipConfig
from bridge.runtime.app import BridgeApp
from bridge.runtime.sip_transport import SipTransport, TcpLimits
from tests.conftest import LOOPBACK, free_port, require_binary, rtp_port_block
from tests.interop.peers import run_sipp

IDLE = 1.0  # seconds (150 by default)
FLOODER, CALLER, PINGER = "127.0.0.2", "127.0.0.3", "127.0.0.4"

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _open(conns: list[Conn]) -> int:
    return sum(1 for reader, _ in conns if not reader.at_eof() and reader.exception() is None)


async def _connect(host: str, port: int, source: str, count: int) -> list[Conn]:
    conns: list[Conn] = []
    for start in range(0, count, 100):
        batch = await asyncio.gather(*(
            asyncio.open_connection(host, port, local_addr=(source, 0))
            for _ in range(min(100, count - start))))
        conns.extend(batch)
    return conns


async def _drain(conns: list[Conn]) -> None:
    """Let every reader see what the bridge did to its connection (EOF or reset)."""
    async def one(reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(4096), 0.05)
    await asyncio.gather(*(one(reader) for reader, _ in conns))


@pytest.mark.timeout(60)
async def test_idle_connections_from_one_source_do_not_lock_out_others(tmp_path: Path) -> None:
    require_binary("sipp")
    rtp_low, rtp_high = rtp_port_block()
    sip = dataclasses.replace(SipConfig(), listen_host=LOOPBACK, listen_port=free_port(),
                              tcp_idle_timeout=IDLE)
    app = BridgeApp(Config(sip=sip, rtp=RtpConfig(bind_host=LOOPBACK, port_low=rtp_low,
                                                  port_high=rtp_high),
                           db_path=tmp_path / "bridge.sqlite3"))
    host, port = await app.start()
    conns: list[Conn] = []
    try:
        conns = await _connect(host, port, FLOODER, 1100)
        await asyncio.sleep(0.2)
        await _drain(conns)
        # (on a slow machine some of the accepted ones may be idle-closed already)
        assert _open(conns) + app.transport.tcp_idle_closed == sip.tcp_per_source
        assert app.transport.tcp_refused == 1100 - sip.tcp_per_source
        # A keepalive flow from a third source.
        reader, writer = await asyncio.open_connection(host, port, local_addr=(PINGER, 0))
        pongs = 0

        async def ping() -> None:
            nonlocal pongs
            for _ in range(int(4 * IDLE / 0.25)):
                writer.write(b"\r\n\r\n")
                await writer.drain()
                pongs += len(await reader.read(16)) // 2
                await asyncio.sleep(0.25)

        pinger = asyncio.create_task(ping())
        # A new client from another source completes a call over TCP, holding it (idle on
        # the wire) for longer than the idle timeout: its dialog keeps the connection.
        sipp = await run_sipp("uac_call.xml", f"{host}:{port}", tmp=tmp_path, local=CALLER,
                              transport="t1", pause_ms=int(2.5 * IDLE * 1000), timeout=15,
                              keys={"rtp_port": str(free_port())})
        assert sipp.returncode == 0, sipp.stdout + sipp.stderr + sipp.logs
        assert app.counters.calls_answered == 1
        # The idle ones were closed after the timeout (the call took 2.5 timeouts).
        await _drain(conns)
        assert _open(conns) == 0
        assert app.transport.tcp_idle_closed >= sip.tcp_per_source
        await pinger
        assert not reader.at_eof() and pongs > 0  # the keepalive flow is still open
        writer.close()
    finally:
        for _, w in conns:
            w.close()
        await app.stop()


class _Peer:
    def __init__(self, host: str) -> None:
        self.peer = (host, 5060)
        self.counted: tuple[str, bool] | None = None


def test_caps_and_reserve() -> None:
    limits = TcpLimits(max_connections=10, reserved=4, per_source=3)

    async def run() -> None:
        transport = SipTransport(lambda *_: None, lambda h: h == "trunk",
                                 tcp_limits=limits,
                                 is_privileged=lambda h: h in ("trunk", "lan"))

        def admit(host: str) -> str | None:
            return transport.admit_connection(_Peer(host))  # type: ignore[arg-type]

        assert [admit("a") for _ in range(4)][-1] == "3 connections from this source already"
        assert admit("b") is None and admit("b") is None and admit("b") is None
        # 6 unprivileged connections: the last 4 are reserved
        assert admit("c") == "the connections left are reserved for trunks and allowed networks"
        assert [admit("lan") for _ in range(4)][-1] is not None  # per-source cap applies
        assert admit("trunk") is None  # trunks: no per-source cap, the reserve is theirs
        assert admit("trunk") == "the connection limit is reached"
        if transport._sweeper is not None:
            transport._sweeper.cancel()

    asyncio.run(run())
