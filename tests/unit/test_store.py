"""The store on a real SQLite file and on a real PostgreSQL database (every test runs on both):
CRUD, uniqueness, PIN lookup, call records, crash recovery, sharing the database between store
instances and processes, the PIN-failure window."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bridge.conference.model import Language, LeaveReason, Role
from bridge.conference.numbers import NumberError
from bridge.conference.pins import WeakPinError, failures_exhausted, generate_room_pins
from bridge.store.base import (
    Account,
    DuplicateError,
    NotFoundError,
    RejectionReason,
    Store,
)
from bridge.store.sql import SqlStore
from bridge.store.sqlite import SqliteStore
from tests.storebackend import Backend

T0 = 1_700_000_000.0
NODE = "bridge-a"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bridge.sqlite"


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[SqlStore]:
    opened = await backend.open()
    try:
        yield opened
    finally:
        await opened.close()


async def account(store: Store, email: str = "ops@example.org") -> Account:
    return await store.create_account(name="Example GmbH", email=email)


def raw(db_path: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Read the file with the stdlib driver, independently of the store under test."""
    conn = sqlite3.connect(db_path)
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def test_sql_store_implements_the_protocol() -> None:
    def as_store(s: SqlStore) -> Store:  # mypy checks the structural match
        return s

    assert callable(as_store)


# -- pragmas -----------------------------------------------------------------------------------


async def test_durability_pragmas(db_path: Path) -> None:
    store = await SqliteStore.open(db_path)
    try:
        await _check_pragmas(store, db_path)
    finally:
        await store.close()


async def _check_pragmas(store: SqliteStore, db_path: Path) -> None:
    assert raw(db_path, "PRAGMA journal_mode") == [("wal",)]
    assert await store.pragmas() == {
        "journal_mode": "wal",
        "synchronous": 2,  # FULL
        "foreign_keys": 1,
        "busy_timeout": 10000,
    }


# -- accounts ----------------------------------------------------------------------------------


async def test_accounts(store: SqlStore) -> None:
    acc = await account(store)
    assert acc.id > 0 and acc.tariff == "standard" and acc.password_hash is None
    assert await store.get_account(acc.id) == acc
    assert await store.find_account_by_email("OPS@example.org") == acc
    assert await store.find_account_by_email("nobody@example.org") is None
    with pytest.raises(DuplicateError) as info:
        await account(store, "Ops@Example.org")
    assert info.value.field == "email"
    with pytest.raises(ValueError, match="e-mail"):
        await account(store, "no-at-sign")
    assert await store.list_accounts() == [acc]


# -- rooms -------------------------------------------------------------------------------------


async def test_room_crud(store: SqlStore, backend: Backend) -> None:
    acc = await account(store)
    room = await store.create_room(
        account_id=acc.id,
        name="weekly",
        participant_pin="482913",
        moderator_pin="730516",
        max_participants=20,
        language=Language.DE,
        intro_path="intro/weekly.wav",
        wait_for_moderator=True,
    )
    assert (room.name, room.max_participants, room.language) == ("weekly", 20, Language.DE)
    assert (room.participant_pin, room.moderator_pin) == ("482913", "730516")
    assert room.wait_for_moderator and not room.locked
    assert room.starts_at is None and room.ends_at is None
    assert await store.get_room(room.id) == room
    assert await store.get_room_by_name(acc.id, "weekly") == room
    assert await store.get_room_by_name(acc.id, "monthly") is None
    other = await store.create_room(
        account_id=acc.id, name="board", participant_pin="905182", moderator_pin="618204"
    )
    assert await store.list_rooms(acc.id) == [other, room]  # by name
    assert await store.list_rooms() == [room, other]  # by id

    changed = await store.update_room(
        replace(room, name="weekly-2", locked=True, participant_pin="730516",
                moderator_pin="482913", starts_at=T0, ends_at=T0 + 3600)
    )
    assert changed == replace(
        room, name="weekly-2", locked=True, participant_pin="730516", moderator_pin="482913",
        starts_at=T0, ends_at=T0 + 3600,
    )
    assert await store.find_room_by_pin("482913") == (changed, Role.MODERATOR)

    assert await store.delete_room(room.id) is True
    assert await store.delete_room(room.id) is False
    assert await store.get_room(room.id) is None
    assert await store.find_room_by_pin("482913") is None
    assert await backend.rows(
        "SELECT count(*) FROM room_pins WHERE room_id = :r", r=room.id
    ) == [(0,)]
    with pytest.raises(NotFoundError):
        await store.update_room(changed)


async def test_room_validation(store: SqlStore) -> None:
    acc = await account(store)
    with pytest.raises(WeakPinError, match="at least 6"):
        await store.create_room(
            account_id=acc.id, name="r", participant_pin="4829", moderator_pin="730516"
        )
    with pytest.raises(WeakPinError, match="easy to guess"):
        await store.create_room(
            account_id=acc.id, name="r", participant_pin="123456", moderator_pin="730516"
        )
    with pytest.raises(WeakPinError, match="must differ"):
        await store.create_room(
            account_id=acc.id, name="r", participant_pin="482913", moderator_pin="482913"
        )
    with pytest.raises(ValueError, match="end after"):
        await store.create_room(
            account_id=acc.id, name="r", participant_pin="482913", moderator_pin="730516",
            starts_at=T0, ends_at=T0,
        )
    with pytest.raises(ValueError, match="at least 1"):
        await store.create_room(
            account_id=acc.id, name="r", participant_pin="482913", moderator_pin="730516",
            max_participants=0,
        )
    with pytest.raises(NotFoundError):
        await store.create_room(
            account_id=acc.id + 99, name="r", participant_pin="482913", moderator_pin="730516"
        )
    assert await store.list_rooms() == []


async def test_room_names_unique_per_account(store: SqlStore) -> None:
    a = await account(store, "a@example.org")
    b = await account(store, "b@example.org")
    await store.create_room(
        account_id=a.id, name="weekly", participant_pin="482913", moderator_pin="730516"
    )
    with pytest.raises(DuplicateError) as info:
        await store.create_room(
            account_id=a.id, name="weekly", participant_pin="905182", moderator_pin="618204"
        )
    assert info.value.field == "room_name"
    # another account may use the name
    await store.create_room(
        account_id=b.id, name="weekly", participant_pin="905182", moderator_pin="618204"
    )


@pytest.mark.parametrize(
    ("participant", "moderator"),
    [
        ("482913", "905182"),  # participant PIN taken as participant PIN
        ("905182", "482913"),  # a participant PIN reused as another room's moderator PIN
        ("730516", "905182"),  # a moderator PIN reused as a participant PIN
    ],
)
async def test_pins_unique_across_rooms_and_roles(
    store: SqlStore, participant: str, moderator: str
) -> None:
    acc = await account(store)
    await store.create_room(
        account_id=acc.id, name="first", participant_pin="482913", moderator_pin="730516"
    )
    with pytest.raises(DuplicateError) as info:
        await store.create_room(
            account_id=acc.id, name="second", participant_pin=participant, moderator_pin=moderator
        )
    assert info.value.field == "pin"
    assert [r.name for r in await store.list_rooms()] == ["first"]  # nothing half-written
    assert await store.pin_in_use("482913") and await store.pin_in_use("730516")
    assert not await store.pin_in_use("905182")


async def test_pin_lookup_decides_room_and_role(store: SqlStore) -> None:
    acc = await account(store)
    first = await store.create_room(
        account_id=acc.id, name="first", participant_pin="482913", moderator_pin="730516"
    )
    second = await store.create_room(
        account_id=acc.id, name="second", participant_pin="905182", moderator_pin="618204"
    )
    assert await store.find_room_by_pin("482913") == (first, Role.PARTICIPANT)
    assert await store.find_room_by_pin("730516") == (first, Role.MODERATOR)
    assert await store.find_room_by_pin("905182") == (second, Role.PARTICIPANT)
    assert await store.find_room_by_pin("618204") == (second, Role.MODERATOR)
    assert await store.find_room_by_pin("111111") is None
    assert await store.find_room_by_pin("") is None


async def test_generated_pins_against_the_real_store(store: SqlStore) -> None:
    acc = await account(store)
    for i in range(5):
        participant, moderator = await generate_room_pins(store)
        await store.create_room(
            account_id=acc.id, name=f"r{i}", participant_pin=participant, moderator_pin=moderator
        )
    pins = [p for r in await store.list_rooms() for p in (r.participant_pin, r.moderator_pin)]
    assert len(set(pins)) == 10


# -- access numbers ----------------------------------------------------------------------------


async def test_access_numbers(store: SqlStore) -> None:
    acc = await account(store)
    room = await store.create_room(
        account_id=acc.id, name="weekly", participant_pin="482913", moderator_pin="730516"
    )
    de = await store.add_access_number(number="030 1234 5678", country="de", language=Language.DE)
    gb = await store.add_access_number(
        number="+44 20 7946 0958", country="GB", language=Language.EN, room_id=room.id
    )
    assert de.number == "+493012345678" and de.country == "DE"
    assert await store.lookup_access_number("0049 30 1234-5678") == de
    assert await store.lookup_access_number("+442079460958") == gb
    assert await store.lookup_access_number("+33123456789") is None
    assert await store.lookup_access_number("garbage") is None
    assert await store.list_access_numbers() == [de, gb]
    with pytest.raises(DuplicateError) as info:
        await store.add_access_number(number="+493012345678", country="DE", language=Language.EN)
    assert info.value.field == "number"
    with pytest.raises(NumberError, match="not DE"):
        await store.add_access_number(number="+33123456789", country="DE", language=Language.FR)
    with pytest.raises(NumberError, match="unknown country"):
        await store.add_access_number(number="+33123456789", country="XX", language=Language.FR)
    with pytest.raises(NotFoundError):
        await store.add_access_number(
            number="+33123456789", country="FR", language=Language.FR, room_id=room.id + 9
        )
    # deleting the room unlinks the number, the number stays
    await store.delete_room(room.id)
    assert await store.lookup_access_number("+442079460958") == replace(gb, room_id=None)
    assert await store.delete_access_number("+49 30 12345678") is True
    assert await store.delete_access_number("+49 30 12345678") is False


# -- call records ------------------------------------------------------------------------------


async def _room_id(store: Store) -> int:
    acc = await account(store)
    room = await store.create_room(
        account_id=acc.id, name="weekly", participant_pin="482913", moderator_pin="730516"
    )
    return room.id


async def open_record(
    store: Store, room_id: int, leg: str, joined_at: float, node_id: str = NODE
) -> int:
    return await store.open_call_record(
        room_id=room_id,
        leg_id=leg,
        number_dialed="+493012345678",
        caller="+4915112345678",
        source="198.51.100.7:5060",
        role=Role.PARTICIPANT,
        language=Language.DE,
        joined_at=joined_at,
        node_id=node_id,
    )


async def test_call_record_lifecycle(store: SqlStore, backend: Backend) -> None:
    room_id = await _room_id(store)
    rec = await open_record(store, room_id, "leg-1", T0)
    # committed at once: another connection sees the open record
    assert await backend.rows(
        "SELECT leg_id, left_at FROM call_records WHERE id = :id", id=rec
    ) == [("leg-1", None)]
    live = await store.live_call_records(room_id)
    assert [(r.id, r.is_open, r.account_id) for r in live] == [(rec, True, 1)]
    assert await store.close_call_record(rec, left_at=T0 + 95, reason=LeaveReason.HANGUP)
    assert await backend.rows(
        "SELECT left_at, leave_reason FROM call_records WHERE id = :id", id=rec
    ) == [(T0 + 95, "hangup")]
    # the first close wins; a second one changes nothing
    assert not await store.close_call_record(rec, left_at=T0 + 99, reason=LeaveReason.KICKED)
    [closed] = await store.call_history(room_id=room_id)
    assert (closed.left_at, closed.leave_reason, closed.role) == (
        T0 + 95, LeaveReason.HANGUP, Role.PARTICIPANT
    )
    assert await store.live_call_records() == []
    with pytest.raises(NotFoundError):
        await store.close_call_record(rec + 100, left_at=T0, reason=LeaveReason.HANGUP)
    with pytest.raises(NotFoundError):
        await open_record(store, room_id + 100, "leg-x", T0)


async def test_history_filters_and_survives_room_deletion(store: SqlStore) -> None:
    room_id = await _room_id(store)
    ids = [await open_record(store, room_id, f"leg-{i}", T0 + i * 60) for i in range(5)]
    for rec in ids[:3]:
        await store.close_call_record(rec, left_at=T0 + 1000, reason=LeaveReason.HANGUP)
    history = await store.call_history(room_id=room_id)
    assert [r.id for r in history] == list(reversed(ids))  # newest first
    window = await store.call_history(since=T0 + 60, until=T0 + 180)
    assert [r.leg_id for r in window] == ["leg-2", "leg-1"]
    assert len(await store.call_history(limit=2)) == 2
    await store.delete_room(room_id)
    kept = await store.call_history(account_id=1)
    assert len(kept) == 5 and all(r.room_id is None for r in kept)


async def test_crash_recovery_closes_only_this_nodes_open_records(backend: Backend) -> None:
    first = await backend.open()
    room_id = await _room_id(first)
    done = await open_record(first, room_id, "done", T0)
    await first.close_call_record(done, left_at=T0 + 30, reason=LeaveReason.KICKED)
    open_a = await open_record(first, room_id, "a", T0 + 10)
    open_b = await open_record(first, room_id, "b", T0 + 20)
    elsewhere = await open_record(first, room_id, "c", T0 + 20, node_id="bridge-b")
    await first.close()  # the process goes away without closing its records

    second = await backend.open()
    try:
        assert await second.close_interrupted(NODE, T0 + 500) == 2
        by_id = {r.id: r for r in await second.call_history()}
        assert (by_id[open_a].left_at, by_id[open_a].leave_reason) == (
            T0 + 500, LeaveReason.INTERRUPTED
        )
        assert by_id[open_b].leave_reason is LeaveReason.INTERRUPTED
        assert (by_id[done].left_at, by_id[done].leave_reason) == (T0 + 30, LeaveReason.KICKED)
        assert by_id[elsewhere].is_open  # another node's calls are not ours to close
        assert await second.close_interrupted(NODE, T0 + 600) == 0  # idempotent
        # a clock that went backwards never yields left_at < joined_at
        late = await open_record(second, room_id, "late", T0 + 900)
        await second.close_interrupted(NODE, T0 + 800)
        assert await backend.rows(
            "SELECT left_at FROM call_records WHERE id = :id", id=late
        ) == [(T0 + 900,)]
    finally:
        await second.close()


CRASHING_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from bridge.conference.model import Language, LeaveReason, Role
    from bridge.store.sql import SqlStore

    async def main() -> None:
        store = await SqlStore.open(sys.argv[1])
        ids = []
        for i in range(3):
            ids.append(await store.open_call_record(
                room_id=int(sys.argv[2]), leg_id=f"child-{i}", number_dialed="+493012345678",
                caller="+4915112345678", source="198.51.100.7:5060", role=Role.MODERATOR,
                language=Language.EN, joined_at=1000.0 + i, node_id="child"))
        await store.close_call_record(ids[0], left_at=1100.0, reason=LeaveReason.HANGUP)
        print(",".join(map(str, ids)), flush=True)
        os._exit(9)  # crash: no close(), no cleanup

    asyncio.run(main())
    """
)


async def test_crash_of_a_real_process_loses_nothing_finished(backend: Backend) -> None:
    store = await backend.open()
    try:
        room_id = await _room_id(store)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CRASHING_CHILD, backend.url, str(room_id),
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate()
        assert proc.returncode == 9
        ids = [int(x) for x in out.decode().strip().split(",")]
        live = await store.live_call_records(room_id)
        assert sorted(r.id for r in live) == ids[1:]
        assert await store.close_interrupted("child", 2000.0) == 2
        by_id = {r.id: r for r in await store.call_history()}
        assert by_id[ids[0]].leave_reason is LeaveReason.HANGUP
        assert by_id[ids[0]].left_at == 1100.0
        assert [by_id[i].leave_reason for i in ids[1:]] == [LeaveReason.INTERRUPTED] * 2
    finally:
        await store.close()


# -- sharing one database ----------------------------------------------------------------------


async def test_two_store_instances_share_one_database(backend: Backend) -> None:
    a = await backend.open()
    b = await backend.open()
    try:
        acc = await account(a)
        room = await a.create_room(
            account_id=acc.id, name="weekly", participant_pin="482913", moderator_pin="730516"
        )
        # b sees a's room at once (no cache), and a sees b's change
        assert await b.find_room_by_pin("730516") == (room, Role.MODERATOR)
        await b.update_room(replace(room, locked=True))
        assert (await a.get_room(room.id)) == replace(room, locked=True)

        # interleaved writes from both connections all land
        async def writer(store: SqlStore, prefix: str) -> list[int]:
            return [await open_record(store, room.id, f"{prefix}{i}", T0 + i) for i in range(25)]

        ids_a, ids_b = await asyncio.gather(writer(a, "a"), writer(b, "b"))
        assert len(set(ids_a) | set(ids_b)) == 50
        assert len(await a.live_call_records(room.id)) == 50

        # a PIN race between the two is settled by the unique index
        results = await asyncio.gather(
            a.create_room(account_id=acc.id, name="x", participant_pin="905182",
                          moderator_pin="618204"),
            b.create_room(account_id=acc.id, name="y", participant_pin="905182",
                          moderator_pin="264951"),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["DuplicateError", "Room"]
        [lost] = [r for r in results if isinstance(r, DuplicateError)]
        assert lost.field == "pin"
        # and again, many times, each race with a PIN of its own: exactly one room per PIN
        for i in range(10):
            pin = f"{520000 + i * 7:06d}"
            race = await asyncio.gather(
                a.create_room(account_id=acc.id, name=f"a{i}", participant_pin=pin,
                              moderator_pin=f"{610000 + i * 11:06d}"),
                b.create_room(account_id=acc.id, name=f"b{i}", participant_pin=pin,
                              moderator_pin=f"{630000 + i * 13:06d}"),
                return_exceptions=True,
            )
            errors = [r for r in race if isinstance(r, BaseException)]
            assert len(errors) == 1 and isinstance(errors[0], DuplicateError), race
            assert errors[0].field == "pin"
            assert await backend.rows(
                "SELECT count(*) FROM room_pins WHERE pin = :p", p=pin
            ) == [(1,)]
    finally:
        await a.close()
        await b.close()


WRITING_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from bridge.store.base import RejectionReason
    from bridge.store.sql import SqlStore

    async def main() -> None:
        store = await SqlStore.open(sys.argv[1])
        for i in range(40):
            await store.record_rejection(at=1000.0 + i, number_dialed="+493012345678",
                caller="", source="ip:203.0.113.9", reason=RejectionReason.WRONG_PIN,
                node_id="child")
        await store.close()

    asyncio.run(main())
    """
)


async def test_concurrent_writes_from_another_process(backend: Backend) -> None:
    store = await backend.open()
    try:
        procs = [
            await asyncio.create_subprocess_exec(sys.executable, "-c", WRITING_CHILD, backend.url)
            for _ in range(2)
        ]
        for i in range(40):
            await store.record_rejection(
                at=1000.0 + i, number_dialed="+493012345678", caller="",
                source="ip:203.0.113.9", reason=RejectionReason.WRONG_PIN, node_id="parent",
            )
        assert [await p.wait() for p in procs] == [0, 0]
        assert await store.count_recent_pin_failures("ip:203.0.113.9", 0.0) == 120
    finally:
        await store.close()


# -- rejections and the PIN-failure window -----------------------------------------------------


async def reject(store: Store, at: float, source: str, reason: RejectionReason) -> int:
    return await store.record_rejection(
        at=at, number_dialed="+493012345678", caller="+4915112345678", source=source,
        reason=reason, node_id=NODE,
    )


async def test_pin_failure_window(store: SqlStore) -> None:
    src = "tel:+4915112345678"
    now = T0 + 3600
    # 10 failures long ago: expired
    for i in range(10):
        await reject(store, T0 + i, src, RejectionReason.WRONG_PIN)
    assert not await failures_exhausted(store, src, now)
    # other reasons and other sources do not count
    for i in range(5):
        await reject(store, now - 10 - i, src, RejectionReason.LOCKED)
        await reject(store, now - 10 - i, "ip:203.0.113.9", RejectionReason.WRONG_PIN)
    for i in range(9):
        await reject(store, now - 500 + i, src, RejectionReason.WRONG_PIN)
    assert await store.count_recent_pin_failures(src, now - 600) == 9
    assert not await failures_exhausted(store, src, now)
    await reject(store, now - 1, src, RejectionReason.WRONG_PIN)
    assert await failures_exhausted(store, src, now)  # the 10th within 10 minutes blocks
    # ... until the oldest of them is more than 10 minutes old
    assert await failures_exhausted(store, src, now + 100)
    assert not await failures_exhausted(store, src, now + 100.5)
    assert not await failures_exhausted(store, "ip:203.0.113.9", now)


async def test_list_rejections(store: SqlStore) -> None:
    first = await reject(store, T0, "ip:1.2.3.4", RejectionReason.UNKNOWN_NUMBER)
    second = await reject(store, T0 + 5, "ip:5.6.7.8", RejectionReason.TOO_MANY_FAILURES)
    listed = await store.list_rejections()
    assert [(r.id, r.reason) for r in listed] == [
        (second, RejectionReason.TOO_MANY_FAILURES),
        (first, RejectionReason.UNKNOWN_NUMBER),
    ]
    assert [r.id for r in await store.list_rejections(source="ip:1.2.3.4")] == [first]
    assert [r.id for r in await store.list_rejections(since=T0 + 1)] == [second]
    with pytest.raises(ValueError, match="bogus"):
        await store.record_rejection(
            at=T0, number_dialed="", caller="", source="", reason="bogus",  # type: ignore[arg-type]
            node_id=NODE,
        )
