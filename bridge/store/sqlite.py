"""``SqliteStore``: the embedded ``Store`` on one SQLite file (aiosqlite).

Durability and sharing:

* ``journal_mode=WAL`` so readers never block the writer and several processes can use the file;
  ``synchronous=FULL`` so a committed call record survives a power cut, not only a process
  crash (NORMAL in WAL mode may lose the last commits on power loss; the cost of FULL is one
  fsync per record write, a few per call -- negligible next to the media path);
* every write method runs in its own ``BEGIN IMMEDIATE`` ... ``COMMIT`` and returns after the
  commit; ``busy_timeout`` makes a second process wait for the write lock instead of failing;
* no caching: every read queries the file, so changes made by the CLI show up at once.

Times are UTC epoch seconds (REAL). ``node_id`` names a bridge process *stably* across restarts
(e.g. the host name, or ``host/slot``); at start-up the process calls
``close_interrupted(node_id, now)`` before taking calls, closing what its previous run left
open. Two live processes must never share a ``node_id``.

Schema migrations are the numbered scripts ``bridge/store/NNNN_name.sql``, applied in order in
one transaction each open; the table ``schema_version`` lists the versions applied.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from types import TracebackType
from typing import Any

import aiosqlite

from bridge.conference.model import Language, LeaveReason, Role, Room
from bridge.conference.numbers import (
    CALLING_CODES,
    NumberError,
    country_of,
    normalize_e164,
    validate_country,
)
from bridge.conference.pins import DEFAULT_PIN_POLICY, PinPolicy, check_pin_pair
from bridge.store.base import (
    AccessNumber,
    Account,
    ApiToken,
    CallRecord,
    Direction,
    DuplicateError,
    NotFoundError,
    Rejection,
    RejectionReason,
    Run,
    RunEnd,
    StoreError,
)

__all__ = [
    "Migration",
    "SchemaTooNewError",
    "SqliteOptions",
    "SqliteStore",
    "latest_version",
    "migrate_file",
    "migrations",
    "schema_version_of",
]

_MIGRATION_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


class SchemaTooNewError(StoreError):
    """The file was written by a newer bridge (its schema version is unknown here)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SqliteOptions:
    """Tuning of the SQLite connection."""

    busy_timeout: float = 10.0  # seconds a writer waits for another process's lock
    synchronous: str = "FULL"  # FULL: durable on power loss; see the module docstring

    def __post_init__(self) -> None:
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str

    def statements(self) -> list[str]:
        """The script split into complete statements (``sqlite3.complete_statement``)."""
        out: list[str] = []
        buf = ""
        for line in self.sql.splitlines(keepends=True):
            buf += line
            if sqlite3.complete_statement(buf):
                if _strip_comments(buf):
                    out.append(buf.strip())
                buf = ""
        if _strip_comments(buf):
            raise ValueError(f"migration {self.version} ends with an incomplete statement")
        return out


def _strip_comments(sql: str) -> str:
    return "\n".join(line.split("--", 1)[0] for line in sql.splitlines()).strip()


def migrations() -> list[Migration]:
    """The packaged migration scripts, ordered by version (1, 2, ... without gaps)."""
    found: list[Migration] = []
    for entry in resources.files("bridge.store").iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match:
            found.append(
                Migration(
                    version=int(match.group(1)),
                    name=match.group(2),
                    sql=entry.read_text(encoding="utf-8"),
                )
            )
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError("migration scripts must be numbered 0001, 0002, ... without gaps")
    return found


def latest_version() -> int:
    return migrations()[-1].version


def schema_version_of(conn: sqlite3.Connection) -> int:
    """Version recorded in ``schema_version`` (0 for an empty file)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate_file(
    path: str | os.PathLike[str],
    target: int | None = None,
    *,
    scripts: Sequence[Migration] | None = None,
    options: SqliteOptions | None = None,
) -> int:
    """Bring the file at ``path`` up to ``target`` (default: the latest version).

    Creates the file if needed and switches it to WAL. All pending scripts run in one
    ``BEGIN IMMEDIATE`` transaction, so two processes opening an old file at once migrate it
    exactly once, and a failing script leaves the file at its old version. Returns the version.
    """
    opts = options if options is not None else SqliteOptions()
    todo = list(scripts) if scripts is not None else migrations()
    newest = todo[-1].version if todo else 0
    goal = newest if target is None else target
    conn = sqlite3.connect(os.fspath(path), isolation_level=None, timeout=opts.busy_timeout)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={opts.synchronous}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = schema_version_of(conn)
            if current > newest:
                raise SchemaTooNewError(
                    f"{os.fspath(path)} has schema version {current}; this bridge knows "
                    f"up to {newest} -- upgrade the bridge"
                )
            if current == 0:
                conn.execute(
                    "CREATE TABLE schema_version ("
                    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
                )
            for migration in todo:
                if current < migration.version <= goal:
                    for statement in migration.statements():
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                        (migration.version, migration.name, time.time()),
                    )
                    current = migration.version
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return current
    finally:
        conn.close()


_ROOM_SELECT = """
SELECT r.id, r.account_id, r.name, p.pin AS participant_pin, m.pin AS moderator_pin,
       r.max_participants, r.language, r.intro_path, r.wait_for_moderator, r.locked,
       r.starts_at, r.ends_at, r.created_at
FROM rooms AS r
JOIN room_pins AS p ON p.room_id = r.id AND p.role = 'participant'
JOIN room_pins AS m ON m.room_id = r.id AND m.role = 'moderator'
"""

_CALL_SELECT = """
SELECT id, room_id, account_id, leg_id, number_dialed, caller, source, role, language,
       joined_at, left_at, leave_reason, node_id, run_id, direction, answered_at,
       conference_at, ended_by
FROM call_records
"""


def _room(row: sqlite3.Row) -> Room:
    return Room(
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        participant_pin=row["participant_pin"],
        moderator_pin=row["moderator_pin"],
        max_participants=row["max_participants"],
        language=Language(row["language"]),
        intro_path=row["intro_path"],
        wait_for_moderator=bool(row["wait_for_moderator"]),
        locked=bool(row["locked"]),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        created_at=row["created_at"],
    )


def _account(row: sqlite3.Row) -> Account:
    return Account(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        password_hash=row["password_hash"],
        tariff=row["tariff"],
        created_at=row["created_at"],
        is_admin=bool(row["is_admin"]),
    )


def _run(row: sqlite3.Row) -> Run:
    reason = row["end_reason"]
    return Run(
        id=row["id"],
        room_id=row["room_id"],
        account_id=row["account_id"],
        node_id=row["node_id"],
        opened_at=row["opened_at"],
        ended_at=row["ended_at"],
        end_reason=None if reason is None else RunEnd(reason),
        peak_participants=row["peak_participants"],
    )


def _api_token(row: sqlite3.Row) -> ApiToken:
    return ApiToken(
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        token_hash=row["token_hash"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


def _access_number(row: sqlite3.Row) -> AccessNumber:
    return AccessNumber(
        number=row["number"],
        country=row["country"],
        language=Language(row["language"]),
        room_id=row["room_id"],
    )


def _call_record(row: sqlite3.Row) -> CallRecord:
    reason = row["leave_reason"]
    return CallRecord(
        id=row["id"],
        room_id=row["room_id"],
        account_id=row["account_id"],
        leg_id=row["leg_id"],
        number_dialed=row["number_dialed"],
        caller=row["caller"],
        source=row["source"],
        role=Role(row["role"]),
        language=Language(row["language"]),
        joined_at=row["joined_at"],
        left_at=row["left_at"],
        leave_reason=None if reason is None else LeaveReason(reason),
        node_id=row["node_id"],
        run_id=row["run_id"],
        direction=Direction(row["direction"]),
        answered_at=row["answered_at"],
        conference_at=row["conference_at"],
        ended_by=row["ended_by"],
    )


def _rejection(row: sqlite3.Row) -> Rejection:
    return Rejection(
        id=row["id"],
        at=row["at"],
        number_dialed=row["number_dialed"],
        caller=row["caller"],
        source=row["source"],
        reason=RejectionReason(row["reason"]),
        room_id=row["room_id"],
        node_id=row["node_id"],
    )


def _integrity(exc: sqlite3.IntegrityError) -> StoreError:
    """Translate a constraint failure into the store's error (the field that clashed)."""
    msg = str(exc)
    if "FOREIGN KEY" in msg:
        return NotFoundError("the account or room referred to does not exist")
    for needle, field, text in (
        ("room_pins.pin", "pin", "this PIN is already in use; choose another"),
        ("rooms.account_id, rooms.name", "room_name", "the account has a room of that name"),
        ("access_numbers.number", "number", "this access number exists already"),
        ("accounts_email", "email", "an account with this e-mail address exists"),
        ("api_tokens.token_hash", "token_hash", "this token exists already"),
    ):
        if needle in msg:
            return DuplicateError(field, text)
    return StoreError(msg)


def _check_room(
    room_name: str, max_participants: int | None, starts: float | None, ends: float | None
) -> None:
    if not room_name.strip():
        raise ValueError("a room needs a name")
    if max_participants is not None and max_participants < 1:
        raise ValueError("max_participants must be at least 1 (or None for no limit)")
    if starts is not None and ends is not None and ends <= starts:
        raise ValueError("a scheduled room must end after it starts")


class SqliteStore:
    """``Store`` on one SQLite file. Open with ``await SqliteStore.open(path)``."""

    def __init__(
        self, db: aiosqlite.Connection, path: str, pin_policy: PinPolicy = DEFAULT_PIN_POLICY
    ) -> None:
        self._db = db
        self._lock = asyncio.Lock()  # one transaction at a time on this connection
        self.path = path
        self.pin_policy = pin_policy

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        options: SqliteOptions | None = None,
        pin_policy: PinPolicy = DEFAULT_PIN_POLICY,
    ) -> SqliteStore:
        """Open (creating or migrating) the file and return a ready store."""
        opts = options if options is not None else SqliteOptions()
        await asyncio.to_thread(migrate_file, path, None, options=opts)
        db = await aiosqlite.connect(
            os.fspath(path), isolation_level=None, timeout=opts.busy_timeout
        )
        try:
            db.row_factory = sqlite3.Row
            await db.execute("PRAGMA foreign_keys=ON")
            await db.execute(f"PRAGMA synchronous={opts.synchronous}")
            await db.execute(f"PRAGMA busy_timeout={int(opts.busy_timeout * 1000)}")
        except BaseException:
            await db.close()
            raise
        return cls(db, os.fspath(path), pin_policy)

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> SqliteStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- plumbing ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction, committed (durably) before the caller continues."""
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                await self._db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                await self._rollback()
                raise _integrity(exc) from exc
            except BaseException:
                await self._rollback()
                raise

    async def _rollback(self) -> None:
        if self._db.in_transaction:
            await self._db.execute("ROLLBACK")

    async def _all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        async with self._db.execute(sql, tuple(params)) as cur:
            return list(await cur.fetchall())

    async def _one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        async with self._db.execute(sql, tuple(params)) as cur:
            return await cur.fetchone()

    async def pragmas(self) -> dict[str, object]:
        """The connection's durability settings (for tests and a health check)."""
        out: dict[str, object] = {}
        for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
            row = await self._one(f"PRAGMA {name}")
            out[name] = None if row is None else row[0]
        return out

    async def schema_version(self) -> int:
        row = await self._one("SELECT max(version) FROM schema_version")
        return 0 if row is None else int(row[0] or 0)

    # -- accounts ----------------------------------------------------------------------------

    async def create_account(
        self,
        *,
        name: str,
        email: str,
        password_hash: str | None = None,
        tariff: str = "standard",
        is_admin: bool = False,
    ) -> Account:
        if "@" not in email:
            raise ValueError(f"not an e-mail address: {email!r}")
        async with self._write() as db:
            cur = await db.execute(
                "INSERT INTO accounts (name, email, password_hash, tariff, created_at, is_admin) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, email.strip(), password_hash, tariff, time.time(), int(is_admin)),
            )
            account_id = cur.lastrowid
        account = await self.get_account(int(account_id or 0))
        assert account is not None
        return account

    async def get_account(self, account_id: int) -> Account | None:
        row = await self._one("SELECT * FROM accounts WHERE id = ?", (account_id,))
        return None if row is None else _account(row)

    async def find_account_by_email(self, email: str) -> Account | None:
        row = await self._one(
            "SELECT * FROM accounts WHERE lower(email) = lower(?)", (email.strip(),)
        )
        return None if row is None else _account(row)

    async def list_accounts(self) -> list[Account]:
        return [_account(r) for r in await self._all("SELECT * FROM accounts ORDER BY id")]

    # -- rooms -------------------------------------------------------------------------------

    async def create_room(
        self,
        *,
        account_id: int,
        name: str,
        participant_pin: str,
        moderator_pin: str,
        max_participants: int | None = None,
        language: Language = Language.EN,
        intro_path: str | None = None,
        wait_for_moderator: bool = False,
        locked: bool = False,
        starts_at: float | None = None,
        ends_at: float | None = None,
    ) -> Room:
        """Create a room; raises ``WeakPinError``, ``DuplicateError`` (room_name, pin),
        ``NotFoundError`` (no such account) or ``ValueError``."""
        check_pin_pair(participant_pin, moderator_pin, self.pin_policy)
        _check_room(name, max_participants, starts_at, ends_at)
        async with self._write() as db:
            cur = await db.execute(
                "INSERT INTO rooms (account_id, name, max_participants, language, intro_path, "
                "wait_for_moderator, locked, starts_at, ends_at, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account_id,
                    name.strip(),
                    max_participants,
                    Language(language).value,
                    intro_path,
                    int(wait_for_moderator),
                    int(locked),
                    starts_at,
                    ends_at,
                    time.time(),
                ),
            )
            room_id = int(cur.lastrowid or 0)
            await db.executemany(
                "INSERT INTO room_pins (pin, room_id, role) VALUES (?, ?, ?)",
                [
                    (participant_pin, room_id, Role.PARTICIPANT.value),
                    (moderator_pin, room_id, Role.MODERATOR.value),
                ],
            )
        room = await self.get_room(room_id)
        assert room is not None
        return room

    async def update_room(self, room: Room) -> Room:
        """Replace a room's configuration (everything but id, account and created_at)."""
        check_pin_pair(room.participant_pin, room.moderator_pin, self.pin_policy)
        _check_room(room.name, room.max_participants, room.starts_at, room.ends_at)
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE rooms SET name = ?, max_participants = ?, language = ?, intro_path = ?, "
                "wait_for_moderator = ?, locked = ?, starts_at = ?, ends_at = ? WHERE id = ?",
                (
                    room.name.strip(),
                    room.max_participants,
                    Language(room.language).value,
                    room.intro_path,
                    int(room.wait_for_moderator),
                    int(room.locked),
                    room.starts_at,
                    room.ends_at,
                    room.id,
                ),
            )
            if cur.rowcount != 1:
                raise NotFoundError(f"no room {room.id}")
            await db.execute("DELETE FROM room_pins WHERE room_id = ?", (room.id,))
            await db.executemany(
                "INSERT INTO room_pins (pin, room_id, role) VALUES (?, ?, ?)",
                [
                    (room.participant_pin, room.id, Role.PARTICIPANT.value),
                    (room.moderator_pin, room.id, Role.MODERATOR.value),
                ],
            )
        updated = await self.get_room(room.id)
        assert updated is not None
        return updated

    async def get_room(self, room_id: int) -> Room | None:
        row = await self._one(_ROOM_SELECT + " WHERE r.id = ?", (room_id,))
        return None if row is None else _room(row)

    async def get_room_by_name(self, account_id: int, name: str) -> Room | None:
        row = await self._one(
            _ROOM_SELECT + " WHERE r.account_id = ? AND r.name = ?", (account_id, name.strip())
        )
        return None if row is None else _room(row)

    async def list_rooms(self, account_id: int | None = None) -> list[Room]:
        if account_id is None:
            rows = await self._all(_ROOM_SELECT + " ORDER BY r.id")
        else:
            rows = await self._all(
                _ROOM_SELECT + " WHERE r.account_id = ? ORDER BY r.name", (account_id,)
            )
        return [_room(r) for r in rows]

    async def delete_room(self, room_id: int) -> bool:
        """Delete a room and its PINs; its call records keep their account."""
        async with self._write() as db:
            cur = await db.execute("DELETE FROM rooms WHERE id = ?", (room_id,))
            return cur.rowcount == 1

    async def find_room_by_pin(self, pin: str) -> tuple[Room, Role] | None:
        """The room a PIN opens and the role it grants (one PIN prompt decides both)."""
        row = await self._one(
            _ROOM_SELECT + " WHERE r.id = (SELECT room_id FROM room_pins WHERE pin = ?)", (pin,)
        )
        if row is None:
            return None
        room = _room(row)
        role = room.role_for_pin(pin)
        assert role is not None
        return room, role

    async def pin_in_use(self, pin: str) -> bool:
        return await self._one("SELECT 1 FROM room_pins WHERE pin = ?", (pin,)) is not None

    # -- access numbers ----------------------------------------------------------------------

    async def add_access_number(
        self, *, number: str, country: str, language: Language, room_id: int | None = None
    ) -> AccessNumber:
        """Add a dial-in number; normalised to E.164 and checked against its country."""
        cc = validate_country(country)
        e164 = normalize_e164(number, cc if cc in CALLING_CODES else None)
        found = country_of(e164)
        if cc in CALLING_CODES and found is not None and CALLING_CODES[found] != CALLING_CODES[cc]:
            raise NumberError(f"{e164} is a {found} number, not {cc}")
        async with self._write() as db:
            await db.execute(
                "INSERT INTO access_numbers (number, country, language, room_id) "
                "VALUES (?, ?, ?, ?)",
                (e164, cc, Language(language).value, room_id),
            )
        return AccessNumber(number=e164, country=cc, language=Language(language), room_id=room_id)

    async def lookup_access_number(self, number: str) -> AccessNumber | None:
        """The access number a call was made to (any E.164 spelling), None if unknown."""
        try:
            e164 = normalize_e164(number)
        except NumberError:
            return None
        row = await self._one("SELECT * FROM access_numbers WHERE number = ?", (e164,))
        return None if row is None else _access_number(row)

    async def list_access_numbers(self) -> list[AccessNumber]:
        rows = await self._all("SELECT * FROM access_numbers ORDER BY country, number")
        return [_access_number(r) for r in rows]

    async def delete_access_number(self, number: str) -> bool:
        e164 = normalize_e164(number)
        async with self._write() as db:
            cur = await db.execute("DELETE FROM access_numbers WHERE number = ?", (e164,))
            return cur.rowcount == 1

    # -- call records ------------------------------------------------------------------------

    async def open_call_record(
        self,
        *,
        room_id: int,
        leg_id: str,
        number_dialed: str,
        caller: str,
        source: str,
        role: Role,
        language: Language,
        joined_at: float,
        node_id: str,
        run_id: int | None = None,
        direction: Direction = Direction.DIAL_IN,
        answered_at: float | None = None,
        conference_at: float | None = None,
    ) -> int:
        """Write the record of a leg that joined; committed before this returns."""
        async with self._write() as db:
            cur = await db.execute(
                "INSERT INTO call_records (room_id, account_id, leg_id, number_dialed, caller, "
                "source, role, language, joined_at, node_id, run_id, direction, answered_at, "
                "conference_at) "
                "SELECT id, account_id, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM rooms WHERE id = ?",
                (
                    leg_id,
                    number_dialed,
                    caller,
                    source,
                    Role(role).value,
                    Language(language).value,
                    joined_at,
                    node_id,
                    run_id,
                    Direction(direction).value,
                    answered_at,
                    conference_at,
                    room_id,
                ),
            )
            if cur.rowcount != 1:
                raise NotFoundError(f"no room {room_id}")
            return int(cur.lastrowid or 0)

    async def close_call_record(
        self, record_id: int, *, left_at: float, reason: LeaveReason, ended_by: str | None = None
    ) -> bool:
        """Close an open record. False if it was closed already (the first close wins)."""
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE call_records SET left_at = ?, leave_reason = ?, ended_by = ? "
                "WHERE id = ? AND left_at IS NULL",
                (left_at, LeaveReason(reason).value, ended_by, record_id),
            )
            if cur.rowcount == 1:
                return True
            async with db.execute("SELECT 1 FROM call_records WHERE id = ?", (record_id,)) as c:
                if await c.fetchone() is None:
                    raise NotFoundError(f"no call record {record_id}")
            return False

    async def mark_in_conference(self, record_id: int, at: float) -> bool:
        """Start the leg's conference time (the moderator is present); False if it was
        started already or the record is closed."""
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE call_records SET conference_at = ? "
                "WHERE id = ? AND conference_at IS NULL AND left_at IS NULL",
                (at, record_id),
            )
            if cur.rowcount == 1:
                return True
            async with db.execute("SELECT 1 FROM call_records WHERE id = ?", (record_id,)) as c:
                if await c.fetchone() is None:
                    raise NotFoundError(f"no call record {record_id}")
            return False

    async def close_interrupted(self, node_id: str, now: float) -> int:
        """Close every record ``node_id`` left open as ``interrupted``, and end its open runs.

        Call at start-up, before taking calls (or from another node when ``node_id``'s
        heartbeat went stale). The end time is the node's last heartbeat when it wrote one
        (the crash happened within one interval after it), else ``now``; never before the
        record's join. Returns how many records were closed.
        """
        async with self._write() as db:
            async with db.execute(
                "SELECT at FROM node_heartbeats WHERE node_id = ?", (node_id,)
            ) as c:
                beat = await c.fetchone()
            at = now if beat is None else min(float(beat[0]), now)
            cur = await db.execute(
                "UPDATE call_records SET left_at = max(?, joined_at), leave_reason = ? "
                "WHERE node_id = ? AND left_at IS NULL",
                (at, LeaveReason.INTERRUPTED.value, node_id),
            )
            await db.execute(
                "UPDATE runs SET ended_at = max(?, opened_at), end_reason = ? "
                "WHERE node_id = ? AND ended_at IS NULL",
                (at, RunEnd.INTERRUPTED.value, node_id),
            )
            return cur.rowcount

    async def live_call_records(self, room_id: int | None = None) -> list[CallRecord]:
        """Open records (legs in a conference now, on every node sharing the database)."""
        if room_id is None:
            rows = await self._all(_CALL_SELECT + " WHERE left_at IS NULL ORDER BY joined_at, id")
        else:
            rows = await self._all(
                _CALL_SELECT + " WHERE left_at IS NULL AND room_id = ? ORDER BY joined_at, id",
                (room_id,),
            )
        return [_call_record(r) for r in rows]

    async def call_history(
        self,
        *,
        room_id: int | None = None,
        account_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
        run_id: int | None = None,
    ) -> list[CallRecord]:
        """Records (open and closed) that joined in ``[since, until)``, newest first."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("run_id = ?", run_id),
            ("room_id = ?", room_id),
            ("account_id = ?", account_id),
            ("joined_at >= ?", since),
            ("joined_at < ?", until),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = _CALL_SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY joined_at DESC, id DESC LIMIT ?"
        params.append(limit)
        return [_call_record(r) for r in await self._all(sql, params)]

    # -- conference runs -------------------------------------------------------------------

    async def open_run(self, *, room_id: int, opened_at: float, node_id: str) -> Run:
        """Start a run of ``room_id`` on ``node_id``; raises ``NotFoundError`` for no room."""
        async with self._write() as db:
            cur = await db.execute(
                "INSERT INTO runs (room_id, account_id, node_id, opened_at) "
                "SELECT id, account_id, ?, ? FROM rooms WHERE id = ?",
                (node_id, opened_at, room_id),
            )
            if cur.rowcount != 1:
                raise NotFoundError(f"no room {room_id}")
            run_id = int(cur.lastrowid or 0)
        run = await self.get_run(run_id)
        assert run is not None
        return run

    async def note_run_peak(self, run_id: int, participants: int) -> None:
        """Raise the run's peak to ``participants`` if that is higher."""
        async with self._write() as db:
            await db.execute(
                "UPDATE runs SET peak_participants = ? WHERE id = ? AND peak_participants < ?",
                (participants, run_id, participants),
            )

    async def end_run(self, run_id: int, *, ended_at: float, reason: RunEnd) -> bool:
        """End an open run; False if it was ended already (the first end wins)."""
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE runs SET ended_at = ?, end_reason = ? WHERE id = ? AND ended_at IS NULL",
                (ended_at, RunEnd(reason).value, run_id),
            )
            if cur.rowcount == 1:
                return True
            async with db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)) as c:
                if await c.fetchone() is None:
                    raise NotFoundError(f"no run {run_id}")
            return False

    async def get_run(self, run_id: int) -> Run | None:
        row = await self._one("SELECT * FROM runs WHERE id = ?", (run_id,))
        return None if row is None else _run(row)

    async def list_runs(
        self,
        *,
        account_id: int | None = None,
        room_id: int | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Runs opened in ``[since, until)``, newest first."""
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("account_id = ?", account_id),
            ("room_id = ?", room_id),
            ("opened_at >= ?", since),
            ("opened_at < ?", until),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        params.append(limit)
        return [_run(r) for r in await self._all(sql, params)]

    # -- API tokens --------------------------------------------------------------------------

    async def create_api_token(
        self, *, account_id: int, name: str, token_hash: str, created_at: float
    ) -> ApiToken:
        """Store a token (its hash only); ``DuplicateError("token_hash")`` if it exists."""
        async with self._write() as db:
            cur = await db.execute(
                "INSERT INTO api_tokens (account_id, name, token_hash, created_at) "
                "VALUES (?, ?, ?, ?)",
                (account_id, name, token_hash, created_at),
            )
            token_id = int(cur.lastrowid or 0)
        row = await self._one("SELECT * FROM api_tokens WHERE id = ?", (token_id,))
        assert row is not None
        return _api_token(row)

    async def find_api_token(self, token_hash: str) -> ApiToken | None:
        """The token with this hash, revoked ones too (the caller checks ``revoked_at``)."""
        row = await self._one("SELECT * FROM api_tokens WHERE token_hash = ?", (token_hash,))
        return None if row is None else _api_token(row)

    async def list_api_tokens(self, account_id: int) -> list[ApiToken]:
        rows = await self._all(
            "SELECT * FROM api_tokens WHERE account_id = ? ORDER BY id", (account_id,)
        )
        return [_api_token(r) for r in rows]

    async def revoke_api_token(self, token_id: int, at: float) -> bool:
        """Revoke a token; False if it was revoked already or does not exist."""
        async with self._write() as db:
            cur = await db.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (at, token_id),
            )
            return cur.rowcount == 1

    async def touch_api_token(self, token_id: int, at: float) -> None:
        async with self._write() as db:
            await db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (at, token_id))

    # -- heartbeats --------------------------------------------------------------------------

    async def write_heartbeat(self, node_id: str, now: float) -> None:
        """Record that ``node_id`` is alive at ``now`` (never moves backwards)."""
        async with self._write() as db:
            await db.execute(
                "INSERT INTO node_heartbeats (node_id, at) VALUES (?, ?) "
                "ON CONFLICT (node_id) DO UPDATE SET at = max(at, excluded.at)",
                (node_id, now),
            )

    async def last_heartbeat(self, node_id: str) -> float | None:
        row = await self._one("SELECT at FROM node_heartbeats WHERE node_id = ?", (node_id,))
        return None if row is None else float(row[0])

    async def stale_nodes(self, before: float) -> list[str]:
        """Nodes whose last heartbeat is older than ``before`` and that still hold open
        records or runs (the ones another node must clean up)."""
        rows = await self._all(
            "SELECT h.node_id FROM node_heartbeats AS h WHERE h.at < ? AND ("
            "EXISTS (SELECT 1 FROM call_records AS c "
            "WHERE c.node_id = h.node_id AND c.left_at IS NULL) OR "
            "EXISTS (SELECT 1 FROM runs AS r WHERE r.node_id = h.node_id AND r.ended_at IS NULL)"
            ") ORDER BY h.node_id",
            (before,),
        )
        return [str(r[0]) for r in rows]

    # -- rejections --------------------------------------------------------------------------

    async def record_rejection(
        self,
        *,
        at: float,
        number_dialed: str,
        caller: str,
        source: str,
        reason: RejectionReason,
        node_id: str,
        room_id: int | None = None,
    ) -> int:
        """Record a call turned away; a ``wrong_pin`` row counts as a PIN failure."""
        async with self._write() as db:
            cur = await db.execute(
                "INSERT INTO rejections (at, number_dialed, caller, source, reason, room_id, "
                "node_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    at,
                    number_dialed,
                    caller,
                    source,
                    RejectionReason(reason).value,
                    room_id,
                    node_id,
                ),
            )
            return int(cur.lastrowid or 0)

    async def count_recent_pin_failures(self, source: str, since: float) -> int:
        row = await self._one(
            "SELECT count(*) FROM rejections WHERE source = ? AND reason = 'wrong_pin' AND at >= ?",
            (source, since),
        )
        return 0 if row is None else int(row[0])

    async def list_rejections(
        self, *, since: float | None = None, source: str | None = None, limit: int = 1000
    ) -> list[Rejection]:
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        if source is not None:
            where.append("source = ?")
            params.append(source)
        sql = "SELECT * FROM rejections"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC LIMIT ?"
        params.append(limit)
        return [_rejection(r) for r in await self._all(sql, params)]
