"""Issue 17 acceptance: two ``bridge serve`` processes on one PostgreSQL (the server the tests
start). A room created with the CLI is dialled through both nodes, both write call records
under their node ids, and the PIN-failure budget of a source is shared: 10 wrong PINs spread
over both nodes, then refusal on both."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bridge.store.base import CallRecord, RejectionReason
from bridge.store.sql import SqlStore
from tests.conftest import LOOPBACK, free_port, rtp_port_block
from tests.integration.confclient import Phone
from tests.integration.test_conference_dialin import eventually, short_prompts

__all__ = ["short_prompts"]

NUMBER = "+493012345678"
PIN, MODERATOR_PIN = "48193726", "59284617"


async def bridge(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@dataclass
class Node:
    name: str
    proc: asyncio.subprocess.Process
    phone: Phone


@contextlib.asynccontextmanager
async def serve(name: str, db_url: str, prompts: Path, tmp: Path,
                heartbeat: float = 1.0) -> AsyncIterator[Node]:
    port = free_port()
    low, high = rtp_port_block()
    config = tmp / f"{name}.toml"
    config.write_text(
        f'db_url = "{db_url}"\nprompts_dir = "{prompts}"\n'
        f'[conference]\nnode_id = "{name}"\nheartbeat_interval = {heartbeat}\n'
        '[web]\nlisten = ""\n'
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "serve", "--config", str(config),
        "--sip-listen", f"{LOOPBACK}:{port}", "--rtp-ports", f"{low}-{high}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert f"{LOOPBACK}:{port}" in banner, banner
        phone = Phone((LOOPBACK, port))
        await phone.start()
        try:
            yield Node(name, proc, phone)
        finally:
            await phone.close()
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wrong_pins(node: Node, caller: str, pins: list[str]) -> None:
    call = await node.phone.dial(NUMBER, caller)
    await call.wait_answered()
    await call.send_digits("2" + "".join(p + "#" for p in pins))
    ended = await call.wait_ended(timeout=60)
    assert ended.reason == "remote_bye"


async def test_two_nodes_share_rooms_records_and_the_pin_budget(
    pg_url: str, short_prompts: Path, tmp_path: Path
) -> None:
    assert (await bridge("db", "upgrade", "--db", pg_url))[0] == 0
    code, out = await bridge("rooms", "create", "weekly", "--pin", PIN, "--moderator-pin",
                             MODERATOR_PIN, "--db", pg_url)
    assert code == 0, out
    code, out = await bridge("numbers", "add", NUMBER, "--country", "DE", "--db", pg_url)
    assert code == 0, out
    store = await SqlStore.open(pg_url, upgrade_schema=False)
    try:
        async with serve("node-a", pg_url, short_prompts, tmp_path) as a, \
                serve("node-b", pg_url, short_prompts, tmp_path) as b:
            # the room made by the CLI is dialled through both nodes; both write records
            joined = []
            for node, caller in ((b, "+4915100000901"), (a, "+4915100000902")):
                call = await node.phone.dial(NUMBER, caller)
                await call.wait_answered()
                await call.send_digits("2" + PIN + "#")
                joined.append(call)

            async def live() -> list[CallRecord]:
                records = await store.live_call_records()
                return records if len(records) == 2 else []

            records = await eventually(live, "a call record from each node", timeout=30)
            assert sorted(r.node_id for r in records) == ["node-a", "node-b"]
            assert {r.room_id for r in records} == {records[0].room_id}
            for call in joined:
                call.hang_up()
                await call.wait_ended()
            await until_closed(store)

            # 10 wrong PINs spread over both nodes (3 + 3 + 3 + 1) ...
            await wrong_pins(a, "+4915100000911", ["11223344", "22334455", "33445566"])
            await wrong_pins(b, "+4915100000912", ["44556677", "55667788", "66778899"])
            await wrong_pins(a, "+4915100000913", ["77889900", "88990011", "99001122"])
            await wrong_pins(b, "+4915100000914", ["10203040", "20304050"])
            rejections = await store.list_rejections()
            wrong = [r for r in rejections if r.reason is RejectionReason.WRONG_PIN]
            assert len(wrong) == 10
            assert {r.node_id for r in wrong} == {"node-a", "node-b"}
            # ... the last call's second try was refused, and a new call on either node too,
            # before any PIN prompt, even with the right PIN
            await wrong_pins(a, "+4915100000915", [PIN])
            await wrong_pins(b, "+4915100000916", [PIN])
            rejections = await store.list_rejections()
            refused = {r.node_id for r in rejections
                       if r.reason is RejectionReason.TOO_MANY_FAILURES}
            assert refused == {"node-a", "node-b"}
            assert len([r for r in rejections if r.reason is RejectionReason.WRONG_PIN]) == 10
            assert len(await store.call_history()) == 2  # nobody else got in
    finally:
        await store.close()


async def until_closed(store: SqlStore) -> None:
    async def closed() -> list[bool]:
        return [] if await store.live_call_records() else [True]

    await eventually(closed, "both records closed", timeout=30)

