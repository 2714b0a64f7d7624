"""Store hot paths: the PIN lookup of every call, opening and closing a call record.

Each backend runs on a real database: a SQLite file in a temporary directory (synchronous=FULL,
so open/close pays the fsyncs a durable record costs) and, where its binaries are installed, a
PostgreSQL server started for the module (tests/pgserver.py, fsync on, Unix socket). The loop
is driven with ``run_until_complete`` per round, as the bridge's own loop would await the
store. Medians in µs are in extra_info.
Run: .venv/bin/pytest bench/test_bench_store.py --benchmark-only

Medians on this 2-core machine (shared, so +-20 %), 2026-12-02:

=====================  ==========  =================
backend                PIN lookup  open+close record
=====================  ==========  =================
old SQLite (12e84a2)   120 µs      1,080 µs
new SQLite             127 µs      1,300 µs (more columns and indexes per record)
PostgreSQL 15          200 µs      1,820 µs (fsync on, Unix socket)
=====================  ==========  =================

(old vs new SQLite measured interleaved, three runs each, same loop as here.)
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from bridge.conference.model import Language, LeaveReason, Role, Room
from bridge.store.base import Store
from bridge.store.sql import SqlStore
from tests.pgserver import PgServer, PgUnavailableError

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    try:
        server = PgServer(durable=True).start()
    except PgUnavailableError as exc:
        pytest.skip(str(exc))
    try:
        yield server
    finally:
        server.stop()


def _median_us(benchmark: BenchmarkFixture) -> float:
    stats = benchmark.stats
    if stats is None:  # --benchmark-disable: a smoke run, nothing measured
        return float("nan")
    return float(stats.stats.median) * 1e6


@pytest.fixture(params=BACKENDS)
def opened(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[asyncio.AbstractEventLoop, Store, Room]]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'bench.sqlite3'}"
    else:
        url = request.getfixturevalue("pg_server").create_database()
    loop = asyncio.new_event_loop()

    async def setup() -> tuple[Store, Room]:
        store = await SqlStore.open(url)
        account = await store.create_account(name="Bench", email="bench@example.org")
        for i in range(50):  # a few rooms, so the lookup is not in a one-row table
            await store.create_room(
                account_id=account.id,
                name=f"room{i}",
                participant_pin=f"{300000 + i * 37:06d}",
                moderator_pin=f"{700000 + i * 41:06d}",
            )
        room = await store.create_room(
            account_id=account.id, name="hot", participant_pin="482913", moderator_pin="730561"
        )
        return store, room

    store, room = loop.run_until_complete(setup())
    try:
        yield loop, store, room
    finally:
        loop.run_until_complete(store.close())
        loop.close()


def test_bench_store_pin_lookup(
    benchmark: BenchmarkFixture, opened: tuple[asyncio.AbstractEventLoop, Store, Room]
) -> None:
    loop, store, room = opened

    def step() -> None:
        found = loop.run_until_complete(store.find_room_by_pin("482913"))
        assert found is not None and found[0].id == room.id

    benchmark(step)
    benchmark.extra_info["median_us"] = _median_us(benchmark)


def test_bench_store_open_close_record(
    benchmark: BenchmarkFixture, opened: tuple[asyncio.AbstractEventLoop, Store, Room]
) -> None:
    loop, store, room = opened
    legs = itertools.count()

    async def one() -> None:
        record = await store.open_call_record(
            room_id=room.id,
            leg_id=f"leg-{next(legs)}",
            number_dialed="+4930123456",
            caller="sip:bench@example.org",
            source="192.0.2.1",
            role=Role.PARTICIPANT,
            language=Language.EN,
            joined_at=1_700_000_000.0,
            node_id="bench",
        )
        assert await store.close_call_record(
            record, left_at=1_700_000_060.0, reason=LeaveReason.HANGUP
        )

    benchmark.pedantic(  # type: ignore[no-untyped-call]
        lambda: loop.run_until_complete(one()), rounds=200, warmup_rounds=5
    )
    benchmark.extra_info["median_us"] = _median_us(benchmark)
