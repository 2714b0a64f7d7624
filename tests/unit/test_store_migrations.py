"""Schema migrations: from an empty file, from a v1 file, atomicity, refusing newer files."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bridge.conference.model import Language, Role
from bridge.store.sqlite import (
    Migration,
    SchemaTooNewError,
    SqliteStore,
    latest_version,
    migrate_file,
    migrations,
)


def tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'index')")
        return {r[0] for r in rows if not r[0].startswith("sqlite_")}
    finally:
        conn.close()


def versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY 1")]
    finally:
        conn.close()


def columns(path: Path, table: str) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
    finally:
        conn.close()


def test_packaged_scripts_are_numbered_without_gaps() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert latest_version() == len(found) >= 2
    assert [m.name for m in found[:2]] == ["initial", "schedule"]


def test_statement_splitting_keeps_semicolons_in_strings_and_comments() -> None:
    script = Migration(
        version=1,
        name="t",
        sql="-- header; with a semicolon\nCREATE TABLE t (x TEXT DEFAULT 'a;b');\n"
        "INSERT INTO t VALUES ('c;d'); -- trailing\n-- only a comment\n",
    )
    # a leading comment stays with the statement it precedes; a lone trailing comment goes
    assert script.statements() == [
        "-- header; with a semicolon\nCREATE TABLE t (x TEXT DEFAULT 'a;b');",
        "INSERT INTO t VALUES ('c;d'); -- trailing",
    ]
    conn = sqlite3.connect(":memory:")
    for statement in script.statements():
        conn.execute(statement)
    assert conn.execute("SELECT x FROM t").fetchall() == [("c;d",)]
    conn.close()
    with pytest.raises(ValueError, match="incomplete"):
        Migration(version=2, name="bad", sql="CREATE TABLE u (x").statements()


async def test_empty_file_gets_the_whole_schema(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    store = await SqliteStore.open(path)
    try:
        assert await store.schema_version() == latest_version()
    finally:
        await store.close()
    assert versions(path) == list(range(1, latest_version() + 1))
    assert {
        "accounts", "rooms", "room_pins", "access_numbers", "call_records", "rejections",
        "schema_version", "rejections_pin_failures", "call_records_open",
    } <= tables(path)
    # opening again is a no-op
    assert migrate_file(path) == latest_version()
    assert versions(path) == list(range(1, latest_version() + 1))


async def test_v1_file_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.sqlite"
    assert migrate_file(path, target=1) == 1
    assert "starts_at" not in columns(path, "rooms")
    conn = sqlite3.connect(path)
    with conn:  # data written by a v1 bridge, in the v1 shape
        conn.execute(
            "INSERT INTO accounts (id, name, email, tariff, created_at) "
            "VALUES (1, 'Old', 'old@example.org', 'standard', 1.0)"
        )
        conn.execute(
            "INSERT INTO rooms (id, account_id, name, max_participants, language, "
            "wait_for_moderator, locked, created_at) VALUES (5, 1, 'legacy', 8, 'fr', 1, 0, 2.0)"
        )
        conn.executemany(
            "INSERT INTO room_pins (pin, room_id, role) VALUES (?, 5, ?)",
            [("482913", "participant"), ("730516", "moderator")],
        )
        conn.execute(
            "INSERT INTO call_records (room_id, account_id, leg_id, number_dialed, caller, "
            "source, role, language, joined_at, node_id) "
            "VALUES (5, 1, 'l1', '+493012345678', '', '1.2.3.4:5060', 'moderator', 'fr', 3.0, 'n')"
        )
    conn.close()

    store = await SqliteStore.open(path)
    try:
        assert await store.schema_version() == latest_version()
        found = await store.find_room_by_pin("730516")
        assert found is not None
        room, role = found
        assert role is Role.MODERATOR
        assert (room.id, room.name, room.language, room.max_participants) == (
            5, "legacy", Language.FR, 8
        )
        assert room.wait_for_moderator and room.starts_at is None and room.ends_at is None
        [record] = await store.live_call_records()
        assert (record.leg_id, record.role) == ("l1", Role.MODERATOR)
        assert await store.close_interrupted("n", 10.0) == 1
    finally:
        await store.close()
    assert "starts_at" in columns(path, "rooms")
    assert versions(path) == list(range(1, latest_version() + 1))


def test_a_failing_migration_leaves_the_file_at_its_old_version(tmp_path: Path) -> None:
    path = tmp_path / "f.sqlite"
    good = migrations()[:1]
    broken = Migration(
        version=2,
        name="broken",
        sql="ALTER TABLE rooms ADD COLUMN extra TEXT;\nINSERT INTO no_such_table VALUES (1);\n",
    )
    migrate_file(path, scripts=good)
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        migrate_file(path, scripts=[*good, broken])
    assert versions(path) == [1]
    assert "extra" not in columns(path, "rooms")  # the ALTER was rolled back too


def test_a_file_from_a_newer_bridge_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    future = Migration(version=latest_version() + 1, name="future", sql="CREATE TABLE f (x);")
    migrate_file(path, scripts=[*migrations(), future])
    with pytest.raises(SchemaTooNewError, match="upgrade the bridge"):
        migrate_file(path)


async def test_store_open_refuses_a_newer_file(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite"
    future = Migration(version=latest_version() + 1, name="future", sql="CREATE TABLE f (x);")
    migrate_file(path, scripts=[*migrations(), future])
    with pytest.raises(SchemaTooNewError):
        await SqliteStore.open(path)


def test_concurrent_openers_migrate_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "race.sqlite"
    migrate_file(path, target=1)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: migrate_file(path), range(4)))
    assert results == [latest_version()] * 4
    assert versions(path) == list(range(1, latest_version() + 1))
