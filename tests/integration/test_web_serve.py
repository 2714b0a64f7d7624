"""``bridge serve`` as a real process serves the web API (the ``start_web`` hook): the address
comes from BRIDGE_WEB_LISTEN (port 0: ephemeral, logged), ``log_format = "json"`` makes every
log line one JSON object, and a token made with the CLI works against it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from bridge.admin import demo
from tests.conftest import LOOPBACK, free_port, rtp_port_block
from tests.integration.webclient import account_token


async def test_serve_runs_the_web_api_with_json_logs(tmp_path: Path) -> None:
    db = tmp_path / "b.sqlite3"
    await asyncio.to_thread(demo, db)
    token = await asyncio.to_thread(account_token, db, "admin@localhost")
    config = tmp_path / "bridge.toml"
    config.write_text('log_format = "json"\n[web]\nlisten = "127.0.0.1:8080"\n')
    low, high = rtp_port_block()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", "--config", str(config),
        "--sip-listen", f"{LOOPBACK}:{free_port()}", "--rtp-ports", f"{low}-{high}",
        "--db", str(db), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BRIDGE_WEB_LISTEN": "127.0.0.1:0"},
    )
    lines: list[dict[str, object]] = []
    try:
        assert proc.stderr is not None
        url = ""
        while not url:
            raw = await asyncio.wait_for(proc.stderr.readline(), 20)
            assert raw, f"bridge exited: {lines}"
            entry = json.loads(raw)  # every line is one JSON object
            lines.append(entry)
            message = str(entry["message"])
            if message.startswith("web API on "):
                url = message.removeprefix("web API on ").removesuffix("/api/v1")
        assert not url.endswith(":8080") and url.startswith("http://127.0.0.1:")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/healthz") as reply:
                health = await reply.json()
                assert reply.status == 200, health
                assert health["checks"]["media_clock"]["ok"] is True
            async with session.get(f"{url}/metrics") as reply:
                assert reply.status == 200
                names = {f.name for f in text_string_to_metric_families(await reply.text())}
                assert "bridge_tick_lateness_seconds" in names
            headers = {"Authorization": f"Bearer {token}"}
            async with session.get(f"{url}/api/v1/rooms", headers=headers) as reply:
                assert reply.status == 200
                assert [r["name"] for r in (await reply.json())["rooms"]] == ["demo"]
            async with session.get(f"{url}/api/v1/conferences", headers=headers) as reply:
                assert reply.status == 200 and (await reply.json()) == {"conferences": []}
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.stderr is not None
    for raw in (await proc.stderr.read()).splitlines():
        json.loads(raw)
    assert {entry["level"] for entry in lines} <= {"DEBUG", "INFO", "WARNING", "ERROR"}
