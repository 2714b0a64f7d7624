"""Issue 14 item 4 with real processes: after ``kill -9`` the interrupted legs end at the
node's last heartbeat, not at the restart; on a shared PostgreSQL another node closes them
once the dead node's heartbeat is missing for more than three intervals."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bridge.store.base import CallRecord
from bridge.store.sql import SqlStore
from tests.integration.test_conference_dialin import eventually, short_prompts
from tests.integration.test_two_nodes import MODERATOR_PIN, NUMBER, PIN, Node, bridge, serve

__all__ = ["short_prompts"]

INTERVAL = 1.0  # the heartbeat interval of the nodes under test


async def prepare(db_url: str) -> None:
    for args in (
        ("db", "upgrade"),
        ("rooms", "create", "weekly", "--pin", PIN, "--moderator-pin", MODERATOR_PIN),
        ("numbers", "add", NUMBER, "--country", "DE"),
    ):
        code, out = await bridge(*args, "--db", db_url)
        assert code == 0, out


async def join(node: Node, store: SqlStore, caller: str) -> CallRecord:
    call = await node.phone.dial(NUMBER, caller)
    await call.wait_answered()
    await call.send_digits("2" + PIN + "#")

    async def mine() -> list[CallRecord]:
        return [r for r in await store.live_call_records() if caller in r.caller]

    [record] = await eventually(mine, f"{caller}'s record", timeout=30)
    return record


async def test_kill_9_then_restart_ends_the_legs_at_the_last_heartbeat(
    tmp_path: Path, short_prompts: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'b.sqlite3'}"
    await prepare(db_url)
    store = await SqlStore.open(db_url, upgrade_schema=False)
    try:
        async with serve("node-a", db_url, short_prompts, tmp_path, INTERVAL) as a:
            record = await join(a, store, "+4915100000931")
            await asyncio.sleep(2.5 * INTERVAL)  # a few heartbeats while the leg is up
            a.proc.kill()  # kill -9: no BYE, no record closed
            killed = time.time()
            await a.proc.wait()
        beat = await store.last_heartbeat("node-a")
        assert beat is not None and record.joined_at <= beat <= killed
        await asyncio.sleep(3 * INTERVAL)  # the node stays down a while
        restarted = time.time()
        async with serve("node-a", db_url, short_prompts, tmp_path, INTERVAL):
            [closed] = await store.call_history()
        assert closed.id == record.id and closed.leave_reason is not None
        assert closed.leave_reason.value == "interrupted"
        assert closed.left_at == beat  # the last heartbeat before the kill ...
        assert closed.left_at is not None and closed.left_at < restarted - 2 * INTERVAL
    finally:
        await store.close()


async def test_another_node_closes_the_legs_of_a_dead_one(
    pg_url: str, tmp_path: Path, short_prompts: Path
) -> None:
    await prepare(pg_url)
    store = await SqlStore.open(pg_url, upgrade_schema=False)
    try:
        async with serve("node-b", pg_url, short_prompts, tmp_path, INTERVAL):
            async with serve("node-a", pg_url, short_prompts, tmp_path, INTERVAL) as a:
                record = await join(a, store, "+4915100000932")
                await asyncio.sleep(1.5 * INTERVAL)
                a.proc.kill()
                await a.proc.wait()
            beat = await store.last_heartbeat("node-a")
            assert beat is not None

            async def closed() -> list[CallRecord]:
                return [r for r in await store.call_history() if not r.is_open]

            # node-b gives node-a up after three missed intervals (and closes its leg)
            [done] = await eventually(closed, "node-b closes node-a's leg", timeout=30)
        assert done.id == record.id and done.node_id == "node-a"
        assert done.leave_reason is not None and done.leave_reason.value == "interrupted"
        assert done.left_at == beat
    finally:
        await store.close()
