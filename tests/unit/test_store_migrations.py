"""Schema migrations (Alembic, run in code): an empty database, a file made by the
hand-written store before the port (tests/data/store/legacy_v2.sqlite3, rows in
legacy_v2.json), a legacy v1 file, concurrent openers, refusing newer and older databases."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bridge.conference.model import Language, LeaveReason, Role
from bridge.store.base import Direction
from bridge.store.migrate import (
    SchemaBehindError,
    SchemaTooNewError,
    head_revision,
    make_engine,
    schema_status,
    upgrade,
)
from bridge.store.sqlite import SqliteStore
from tests.storebackend import Backend

DATA = Path(__file__).resolve().parents[1] / "data" / "store"
TABLES = ["accounts", "rooms", "room_pins", "access_numbers", "call_records", "rejections"]


def raw(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def names(path: Path) -> set[str]:
    rows = raw(path, "SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
    return {r[0] for r in rows if not r[0].startswith("sqlite_")}


def revision(path: Path) -> list[tuple[Any, ...]]:
    return raw(path, "SELECT version_num FROM alembic_version")


def dump(path: Path, table: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")]
    finally:
        conn.close()


def test_revisions_are_a_single_line() -> None:
    assert head_revision() >= "0003"


async def test_empty_file_gets_the_whole_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    store = await SqliteStore.open(path)
    await store.close()
    assert revision(path) == [(head_revision(),)]
    assert {
        *TABLES, "runs", "api_tokens", "node_heartbeats", "alembic_version",
        "rejections_pin_failures", "call_records_open", "accounts_email",
    } <= names(path)
    assert "schema_version" not in names(path)
    store = await SqliteStore.open(path)  # opening again is a no-op
    await store.close()
    assert revision(path) == [(head_revision(),)]


async def test_database_made_by_the_old_store_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    shutil.copy(DATA / "legacy_v2.sqlite3", path)
    expected: dict[str, list[dict[str, Any]]] = json.loads(
        (DATA / "legacy_v2.json").read_text()
    )
    engine = make_engine(path)
    try:
        before = await schema_status(engine)
        assert (before.current, before.pending[0]) == ("0002", "0003")
        assert before.pending[-1] == head_revision()
        with pytest.raises(SchemaBehindError, match="bridge db upgrade"):
            await SqliteStore.open(path, upgrade_schema=False)
        assert await upgrade(engine) == head_revision()
        assert (await schema_status(engine)).up_to_date
    finally:
        await engine.dispose()
    assert "schema_version" not in names(path)
    for table in TABLES:
        rows = dump(path, table)
        # every old row and column is there, unchanged; new columns have their defaults
        assert [{k: r[k] for k in old} for r, old in zip(rows, expected[table], strict=True)] \
            == expected[table], table
    store = await SqliteStore.open(path, upgrade_schema=False)
    try:
        found = await store.find_room_by_pin("730561")
        assert found is not None
        room, role = found
        assert (room.name, role, room.language, room.max_participants) == (
            "weekly", Role.MODERATOR, Language.DE, 20
        )
        assert room.wait_for_moderator and not room.locked
        board = await store.get_room_by_name(1, "board")
        assert board is not None and board.locked and board.starts_at is not None
        [live] = await store.live_call_records()
        assert (live.leg_id, live.direction, live.run_id) == ("leg-2", Direction.DIAL_IN, None)
        assert [n.number for n in await store.list_access_numbers()] == [
            "+4930123456", "+442071234567"
        ]
        accounts = await store.list_accounts()
        assert [(a.email, a.is_admin) for a in accounts] == [
            ("ops@acme.example", False), ("it@other.example", False)
        ]
        # the old rows keep working: the open record closes, a new one opens on an old room
        assert await store.close_call_record(
            live.id, left_at=live.joined_at + 5, reason=LeaveReason.HANGUP
        )
        await store.open_call_record(
            room_id=room.id, leg_id="new", number_dialed="+4930123456", caller="c",
            source="192.0.2.1", role=Role.PARTICIPANT, language=Language.EN,
            joined_at=live.joined_at + 10, node_id="bridge-a",
        )
        assert len(await store.call_history()) == 3
    finally:
        await store.close()


async def test_a_legacy_v1_file_gets_the_later_revisions(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite3"
    engine = make_engine(path)
    try:
        await upgrade(engine, "0001")
    finally:
        await engine.dispose()
    conn = sqlite3.connect(path)  # make it look like the old runner's v1 file
    with conn:
        conn.execute("DROP TABLE alembic_version")
        conn.execute(
            "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at REAL NOT NULL)"
        )
        conn.execute("INSERT INTO schema_version VALUES (1, 'initial', 1.0)")
        conn.execute(
            "INSERT INTO accounts (id, name, email, tariff, created_at) "
            "VALUES (1, 'Old', 'old@example.org', 'standard', 1.0)"
        )
        conn.execute(
            "INSERT INTO rooms (id, account_id, name, language, wait_for_moderator, locked, "
            "created_at) VALUES (5, 1, 'legacy', 'fr', 1, 0, 2.0)"
        )
        conn.executemany(
            "INSERT INTO room_pins (pin, room_id, role) VALUES (?, 5, ?)",
            [("482913", "participant"), ("730516", "moderator")],
        )
    conn.close()
    store = await SqliteStore.open(path)
    try:
        found = await store.find_room_by_pin("482913")
        assert found is not None and found[0].starts_at is None
        assert found[1] is Role.PARTICIPANT
    finally:
        await store.close()
    assert revision(path) == [(head_revision(),)]


async def test_a_database_from_a_newer_bridge_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    await (await SqliteStore.open(path)).close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    conn.close()
    with pytest.raises(SchemaTooNewError, match="upgrade the bridge"):
        await SqliteStore.open(path)
    assert revision(path) == [("9999",)]


def test_concurrent_openers_migrate_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "race.sqlite3"
    shutil.copy(DATA / "legacy_v2.sqlite3", path)

    def open_once(_: int) -> str | None:
        async def go() -> str | None:
            store = await SqliteStore.open(path)
            try:
                return await store.schema_revision()
            finally:
                await store.close()

        return asyncio.run(go())

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(open_once, range(4)))
    assert results == [head_revision()] * 4
    assert revision(path) == [(head_revision(),)]
    assert len(dump(path, "rooms")) == 3


async def test_every_backend_migrates_from_empty_to_head(backend: Backend) -> None:
    engine = make_engine(backend.url)
    try:
        empty = await schema_status(engine)
        assert empty.current is None and empty.pending[0] == "0001"
        assert empty.pending[-1] == head_revision()
        assert await upgrade(engine, "0002") == "0002"
        assert (await schema_status(engine)).pending == empty.pending[2:]
        assert await upgrade(engine) == head_revision()
        assert (await schema_status(engine)).up_to_date
        assert await upgrade(engine) == head_revision()  # a no-op now
    finally:
        await engine.dispose()
    assert await backend.rows("SELECT version_num FROM alembic_version") == [(head_revision(),)]
    store = await backend.open(upgrade_schema=False)
    try:
        assert await store.schema_revision() == head_revision()
    finally:
        await store.close()


def test_db_commands_on_postgresql(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.cli import main

    assert main(["db", "check", "--db", pg_url]) == 1
    assert "pending: 0001" in capsys.readouterr().err
    assert main(["db", "upgrade", "--db", pg_url]) == 0
    assert f"to {head_revision()}" in capsys.readouterr().out
    assert main(["db", "check", "--db", pg_url]) == 0
