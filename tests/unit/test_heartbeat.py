"""The node heartbeat on a real store (SQLite and PostgreSQL): a live node closes the legs and
runs of a node whose heartbeat is missing for more than three intervals, at that node's last
heartbeat; a node never closes its own."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bridge.conference.model import Language, LeaveReason, Role
from bridge.runtime.heartbeat import Heartbeat
from bridge.store.base import RunEnd
from bridge.store.sql import SqlStore
from tests.storebackend import Backend

T0 = 1_700_000_000.0


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[SqlStore]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_a_live_node_closes_the_legs_of_a_silent_one(store: SqlStore) -> None:
    account = await store.create_account(name="A", email="a@example.org")
    room = await store.create_room(account_id=account.id, name="r", participant_pin="482913",
                                   moderator_pin="730561")
    clock_a, clock_b = Clock(T0), Clock(T0)
    a = Heartbeat(store, "node-a", 5.0, clock=clock_a)
    b = Heartbeat(store, "node-b", 5.0, clock=clock_b)
    await a.beat()
    await b.beat()
    run = await store.open_run(room_id=room.id, opened_at=T0 + 1, node_id="node-a")
    record = await store.open_call_record(
        room_id=room.id, leg_id="leg", number_dialed="+4930123456", caller="c",
        source="ip:192.0.2.1", role=Role.PARTICIPANT, language=Language.EN,
        joined_at=T0 + 1, node_id="node-a", run_id=run.id,
    )
    clock_a.now = T0 + 5
    await a.beat()  # node-a's last heartbeat; then it crashes
    for step in (10, 15, 20):  # within three intervals: node-a is not given up yet
        clock_b.now = T0 + step
        assert await b.beat() == {}
    clock_b.now = T0 + 21
    assert await b.beat() == {"node-a": 1}
    [closed] = await store.call_history()
    assert closed.id == record
    assert (closed.left_at, closed.leave_reason) == (T0 + 5, LeaveReason.INTERRUPTED)
    ended = await store.get_run(run.id)
    assert ended is not None and (ended.ended_at, ended.end_reason) == (
        T0 + 5, RunEnd.INTERRUPTED
    )
    assert await b.beat() == {}  # done once


async def test_a_node_never_closes_its_own_legs(store: SqlStore) -> None:
    account = await store.create_account(name="A", email="a@example.org")
    room = await store.create_room(account_id=account.id, name="r", participant_pin="482913",
                                   moderator_pin="730561")
    clock = Clock(T0)
    beat = Heartbeat(store, "node-a", 5.0, clock=clock)
    await beat.beat()
    await store.open_call_record(
        room_id=room.id, leg_id="leg", number_dialed="+4930123456", caller="c",
        source="ip:192.0.2.1", role=Role.PARTICIPANT, language=Language.EN,
        joined_at=T0, node_id="node-a",
    )
    clock.now = T0 + 3600  # a long stall of this very node
    assert await beat.beat() == {}
    assert len(await store.live_call_records()) == 1
    assert await store.last_heartbeat("node-a") == T0 + 3600


def test_interval_must_be_positive(tmp_path: object) -> None:
    with pytest.raises(ValueError, match="positive"):
        Heartbeat(None, "n", 0)  # type: ignore[arg-type]
