"""``SqlStore``: the ``Store`` on SQLAlchemy Core 2 (asyncio), for SQLite and PostgreSQL.

One schema (``bridge.store.schema``), one migration history (``bridge.store.migrate``). Open
with ``await SqlStore.open(db_url)``; it refuses a database that is behind
(``SchemaBehindError``, run ``bridge db upgrade``) unless ``upgrade=True``.

Guarantees, on both databases:

* every write runs in its own transaction and returns after the commit (SQLite:
  ``BEGIN IMMEDIATE``, ``synchronous=FULL``, WAL; PostgreSQL: the default read committed);
* no caching: every call queries the database, so every node sees a change at once;
* a PIN is unique across rooms and roles by the primary key of ``room_pins`` (a constraint,
  never a read-then-write): of two nodes creating a room with one PIN, exactly one wins and
  the other gets ``DuplicateError("pin")``;
* the PIN-failure budget of a source lives in the database (``rejections``, ``pin_attempts``),
  shared by every node.

Hot paths (the PIN lookup of every call, opening and closing a call record): on SQLite they
run their statements, compiled once from the same Core objects, straight on the driver
connection the store holds (SQLAlchemy's per-statement work would double their cost); on
PostgreSQL they go through SQLAlchemy like everything else (its compiled cache applies).

Times are UTC epoch seconds. ``node_id`` names a bridge process stably across restarts; at
start-up a node calls ``close_interrupted(node_id, now)``, and a live node does the same for a
node whose heartbeat went stale.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bridge.conference.model import Language, LeaveReason, Role, Room
from bridge.conference.numbers import (
    CALLING_CODES,
    NumberError,
    country_of,
    normalize_e164,
    validate_country,
)
from bridge.conference.pins import DEFAULT_PIN_POLICY, PinPolicy, check_pin_pair
from bridge.store import schema as t
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
from bridge.store.migrate import (
    SchemaBehindError,
    SqliteOptions,
    async_url,
    describe,
    make_engine,
    schema_status,
    status_of,
    upgrade,
)

__all__ = ["SqlStore", "open_for_serving"]

Row = Mapping[Any, Any]


def _greatest(a: Any, b: Any) -> sa.ColumnElement[Any]:
    """max(a, b) on both databases (SQLite's scalar max, PostgreSQL's greatest)."""
    return sa.case((a > b, a), else_=b)


_p = t.room_pins.alias("p")
_m = t.room_pins.alias("m")
_r = t.rooms
_ROOM_SELECT = (
    sa.select(
        _r.c.id,
        _r.c.account_id,
        _r.c.name,
        _p.c.pin.label("participant_pin"),
        _m.c.pin.label("moderator_pin"),
        _r.c.max_participants,
        _r.c.language,
        _r.c.intro_path,
        _r.c.wait_for_moderator,
        _r.c.locked,
        _r.c.starts_at,
        _r.c.ends_at,
        _r.c.created_at,
    )
    .select_from(_r)
    .join(_p, sa.and_(_p.c.room_id == _r.c.id, _p.c.role == Role.PARTICIPANT.value))
    .join(_m, sa.and_(_m.c.room_id == _r.c.id, _m.c.role == Role.MODERATOR.value))
)
_PIN_LOOKUP = _ROOM_SELECT.where(
    _r.c.id
    == sa.select(t.room_pins.c.room_id)
    .where(t.room_pins.c.pin == sa.bindparam("pin"))
    .scalar_subquery()
)
_cr = t.call_records
_OPEN_RECORD = (
    sa.insert(_cr)
    .from_select(
        [
            "room_id", "account_id", "leg_id", "number_dialed", "caller", "source", "role",
            "language", "joined_at", "node_id", "run_id", "direction", "answered_at",
            "conference_at",
        ],
        sa.select(
            _r.c.id,
            _r.c.account_id,
            sa.bindparam("leg_id", type_=sa.Text),
            sa.bindparam("number_dialed", type_=sa.Text),
            sa.bindparam("caller", type_=sa.Text),
            sa.bindparam("source", type_=sa.Text),
            sa.bindparam("role", type_=sa.Text),
            sa.bindparam("language", type_=sa.Text),
            sa.bindparam("joined_at", type_=sa.Float),
            sa.bindparam("node_id", type_=sa.Text),
            sa.bindparam("run_id", type_=sa.Integer),
            sa.bindparam("direction", type_=sa.Text),
            sa.bindparam("answered_at", type_=sa.Float),
            sa.bindparam("conference_at", type_=sa.Float),
        ).where(_r.c.id == sa.bindparam("room_id")),
    )
    .returning(_cr.c.id)
)
_CLOSE_RECORD = (
    sa.update(_cr)
    .where(_cr.c.id == sa.bindparam("record_id"), _cr.c.left_at.is_(None))
    .values(
        left_at=sa.bindparam("left_at", type_=sa.Float),
        leave_reason=sa.bindparam("reason", type_=sa.Text),
        ended_by=sa.bindparam("ended_by", type_=sa.Text),
    )
)
_RECORD_EXISTS = sa.select(_cr.c.id).where(_cr.c.id == sa.bindparam("record_id"))
_OPEN_RECORD_KEYS = (
    "leg_id", "number_dialed", "caller", "source", "role", "language", "joined_at", "node_id",
    "run_id", "direction", "answered_at", "conference_at", "room_id",
)


def _room(row: Row) -> Room:
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


def _account(row: Row) -> Account:
    return Account(
        id=row["id"],
        name=row["name"],
        email=row["email"],
        password_hash=row["password_hash"],
        tariff=row["tariff"],
        created_at=row["created_at"],
        is_admin=bool(row["is_admin"]),
    )


def _access_number(row: Row) -> AccessNumber:
    return AccessNumber(
        number=row["number"],
        country=row["country"],
        language=Language(row["language"]),
        room_id=row["room_id"],
    )


def _call_record(row: Row) -> CallRecord:
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


def _rejection(row: Row) -> Rejection:
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


def _run(row: Row) -> Run:
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


def _api_token(row: Row) -> ApiToken:
    return ApiToken(
        id=row["id"],
        account_id=row["account_id"],
        name=row["name"],
        token_hash=row["token_hash"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


# (what SQLite says, what PostgreSQL names) -> the field of DuplicateError
_UNIQUE = (
    (("room_pins.pin", "room_pins_pkey"), "pin", "this PIN is already in use; choose another"),
    (
        ("rooms.account_id, rooms.name", "rooms_account_id_name_key"),
        "room_name",
        "the account has a room of that name",
    ),
    (
        ("access_numbers.number", "access_numbers_pkey"),
        "number",
        "this access number exists already",
    ),
    (("accounts_email", '"accounts_email"'), "email", "an account with this e-mail address exists"),
    (
        ("api_tokens.token_hash", "api_tokens_token_hash_key"),
        "token_hash",
        "this token exists already",
    ),
)


def _integrity(exc: sa.exc.IntegrityError) -> StoreError:
    """Translate a constraint failure into the store's error (the field that clashed)."""
    msg = str(exc.orig)
    if "FOREIGN KEY" in msg or "foreign key" in msg:
        return NotFoundError("the account or room referred to does not exist")
    for needles, field, text in _UNIQUE:
        if any(n in msg for n in needles):
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


_QMARK = re.compile(r"\?")


class _Compiled:
    """A Core statement compiled once for SQLite's driver: SQL with ``?`` and the order of
    its named parameters."""

    def __init__(self, statement: sa.ClauseElement, *, postgresql: bool = False) -> None:
        dialect = (pg_dialect.asyncpg.dialect() if postgresql  # type: ignore[no-untyped-call]
                   else sqlite_dialect.dialect(paramstyle="qmark"))
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, sa.sql.compiler.SQLCompiler)
        self.sql = str(compiled)
        self.keys: tuple[str, ...] = tuple(compiled.positiontup or ())
        self.defaults = dict(compiled.params)  # the literals of the statement
        assert postgresql or len(_QMARK.findall(self.sql)) == len(self.keys)

    def params(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(values[k] if k in values else self.defaults[k] for k in self.keys)


class SqlStore:
    """``Store`` on SQLAlchemy Core. Open with ``await SqlStore.open(db_url)``."""

    def __init__(
        self,
        engine: AsyncEngine,
        conn: AsyncConnection | None,
        raw: Any,
        pin_policy: PinPolicy = DEFAULT_PIN_POLICY,
    ) -> None:
        self.engine = engine
        self.pin_policy = pin_policy
        self.dialect = engine.dialect.name
        self.url = describe(engine.url)
        self._conn = conn  # SQLite: the one connection, held for the store's life
        self._raw = raw  # SQLite: its aiosqlite driver connection (the fast path)
        self._lock = asyncio.Lock()  # SQLite: one transaction at a time on the connection
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")  # PostgreSQL
        self._fast = (
            {
                "pin": _Compiled(_PIN_LOOKUP),
                "open": _Compiled(_OPEN_RECORD),
                "close": _Compiled(_CLOSE_RECORD),
                "exists": _Compiled(_RECORD_EXISTS),
            }
            if raw is not None
            else {
                "pin": _Compiled(_PIN_LOOKUP, postgresql=True),
                "open": _Compiled(_OPEN_RECORD, postgresql=True),
                "close": _Compiled(_CLOSE_RECORD, postgresql=True),
            }
            if self.dialect == "postgresql"
            else {}
        )

    @classmethod
    async def open(
        cls,
        db_url: str | os.PathLike[str],
        *,
        options: SqliteOptions | None = None,
        pin_policy: PinPolicy = DEFAULT_PIN_POLICY,
        upgrade_schema: bool = True,
        pool_size: int = 5,
    ) -> Self:
        """Open the database. ``upgrade_schema`` (the default, for tests and tools) applies
        pending migrations; without it a database that is behind raises
        ``SchemaBehindError`` naming ``bridge db upgrade``."""
        url = async_url(db_url)
        engine = make_engine(url, options, pool_size=pool_size)
        try:
            if upgrade_schema:
                await upgrade(engine)
            else:
                status = await schema_status(engine)
                if not status.up_to_date:
                    raise SchemaBehindError(
                        f"the database {describe(url)} is at schema revision "
                        f"{status.current or 'none'}, this bridge needs {status.head}: "
                        "run `bridge db upgrade`"
                    )
            conn: AsyncConnection | None = None
            raw: Any = None
            if engine.dialect.name == "sqlite":
                conn = await engine.connect()
                raw = (await conn.get_raw_connection()).driver_connection
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, conn, raw, pin_policy)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        await self.engine.dispose()

    async def __aenter__(self) -> Self:
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
    async def _tx(self, *, write: bool = True) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed (durably) before the caller continues."""
        if self._conn is not None:
            async with self._lock:
                conn = self._conn
                conn.info["bridge_read"] = not write
                try:
                    yield conn
                    await conn.commit()
                except sa.exc.IntegrityError as exc:
                    await conn.rollback()
                    raise _integrity(exc) from exc
                except BaseException:
                    await conn.rollback()
                    raise
            return
        try:
            if write:
                async with self.engine.begin() as conn:
                    yield conn
            else:  # one statement: no BEGIN/COMMIT round trips
                async with self._reader.connect() as conn:
                    yield conn
        except sa.exc.IntegrityError as exc:
            raise _integrity(exc) from exc

    async def _all(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) \
            -> Sequence[Row]:
        async with self._tx(write=False) as conn:
            result = await conn.execute(statement, dict(params or {}))
            return list(result.mappings())

    async def _one(self, statement: sa.Executable, params: Mapping[str, Any] | None = None) \
            -> Row | None:
        async with self._tx(write=False) as conn:
            result = await conn.execute(statement, dict(params or {}))
            return result.mappings().first()

    async def pragmas(self) -> dict[str, object]:
        """SQLite: the connection's durability settings (for tests and a health check)."""
        out: dict[str, object] = {}
        if self._raw is None:
            return out
        async with self._lock:
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout"):
                async with self._raw.execute(f"PRAGMA {name}") as cur:
                    row = await cur.fetchone()
                out[name] = None if row is None else row[0]
        return out

    async def schema_revision(self) -> str | None:
        """The Alembic revision the database is at."""
        async with self._tx(write=False) as conn:
            status = await conn.run_sync(status_of)
        return status.current

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
        async with self._tx() as conn:
            result = await conn.execute(
                sa.insert(t.accounts).returning(*t.accounts.c),
                {
                    "name": name,
                    "email": email.strip(),
                    "password_hash": password_hash,
                    "tariff": tariff,
                    "created_at": time.time(),
                    "is_admin": is_admin,
                },
            )
            return _account(result.mappings().one())

    async def get_account(self, account_id: int) -> Account | None:
        row = await self._one(sa.select(t.accounts).where(t.accounts.c.id == account_id))
        return None if row is None else _account(row)

    async def find_account_by_email(self, email: str) -> Account | None:
        row = await self._one(
            sa.select(t.accounts).where(
                sa.func.lower(t.accounts.c.email) == sa.func.lower(email.strip())
            )
        )
        return None if row is None else _account(row)

    async def list_accounts(self) -> list[Account]:
        rows = await self._all(sa.select(t.accounts).order_by(t.accounts.c.id))
        return [_account(r) for r in rows]

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
        async with self._tx() as conn:
            room_id = (
                await conn.execute(
                    sa.insert(t.rooms).returning(t.rooms.c.id),
                    {
                        "account_id": account_id,
                        "name": name.strip(),
                        "max_participants": max_participants,
                        "language": Language(language).value,
                        "intro_path": intro_path,
                        "wait_for_moderator": wait_for_moderator,
                        "locked": locked,
                        "starts_at": starts_at,
                        "ends_at": ends_at,
                        "created_at": time.time(),
                    },
                )
            ).scalar_one()
            await conn.execute(
                sa.insert(t.room_pins),
                [
                    {"pin": participant_pin, "room_id": room_id, "role": Role.PARTICIPANT.value},
                    {"pin": moderator_pin, "room_id": room_id, "role": Role.MODERATOR.value},
                ],
            )
        room = await self.get_room(room_id)
        assert room is not None
        return room

    async def update_room(self, room: Room) -> Room:
        """Replace a room's configuration (everything but id, account and created_at)."""
        check_pin_pair(room.participant_pin, room.moderator_pin, self.pin_policy)
        _check_room(room.name, room.max_participants, room.starts_at, room.ends_at)
        async with self._tx() as conn:
            result = await conn.execute(
                sa.update(t.rooms)
                .where(t.rooms.c.id == room.id)
                .values(
                    name=room.name.strip(),
                    max_participants=room.max_participants,
                    language=Language(room.language).value,
                    intro_path=room.intro_path,
                    wait_for_moderator=room.wait_for_moderator,
                    locked=room.locked,
                    starts_at=room.starts_at,
                    ends_at=room.ends_at,
                )
            )
            if result.rowcount != 1:
                raise NotFoundError(f"no room {room.id}")
            await conn.execute(sa.delete(t.room_pins).where(t.room_pins.c.room_id == room.id))
            await conn.execute(
                sa.insert(t.room_pins),
                [
                    {"pin": room.participant_pin, "room_id": room.id,
                     "role": Role.PARTICIPANT.value},
                    {"pin": room.moderator_pin, "room_id": room.id,
                     "role": Role.MODERATOR.value},
                ],
            )
        updated = await self.get_room(room.id)
        assert updated is not None
        return updated

    async def get_room(self, room_id: int) -> Room | None:
        row = await self._one(_ROOM_SELECT.where(_r.c.id == room_id))
        return None if row is None else _room(row)

    async def get_room_by_name(self, account_id: int, name: str) -> Room | None:
        row = await self._one(
            _ROOM_SELECT.where(_r.c.account_id == account_id, _r.c.name == name.strip())
        )
        return None if row is None else _room(row)

    async def list_rooms(self, account_id: int | None = None) -> list[Room]:
        if account_id is None:
            rows = await self._all(_ROOM_SELECT.order_by(_r.c.id))
        else:
            rows = await self._all(
                _ROOM_SELECT.where(_r.c.account_id == account_id).order_by(_r.c.name)
            )
        return [_room(r) for r in rows]

    async def delete_room(self, room_id: int) -> bool:
        """Delete a room and its PINs; its call records keep their account."""
        async with self._tx() as conn:
            result = await conn.execute(sa.delete(t.rooms).where(t.rooms.c.id == room_id))
            return bool(result.rowcount == 1)

    @asynccontextmanager
    async def _pg_driver(self) -> AsyncIterator[Any]:
        """PostgreSQL hot path: a pooled connection's asyncpg connection, in autocommit (one
        statement each; SQLAlchemy's per-statement work would cost 4x the round trip)."""
        import asyncpg

        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            try:
                yield raw.driver_connection
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise NotFoundError(str(exc)) from exc

    async def find_room_by_pin(self, pin: str) -> tuple[Room, Role] | None:
        """The room a PIN opens and the role it grants (one PIN prompt decides both)."""
        fast = self._fast.get("pin")
        if self._raw is not None and fast is not None:
            async with self._lock, self._raw.execute(fast.sql, fast.params({"pin": pin})) as cur:
                found = await cur.fetchone()
            row: Row | None = None if found is None else dict(zip(_PIN_COLUMNS, found, strict=True))
        elif fast is not None:
            async with self._pg_driver() as driver:
                found = await driver.fetchrow(fast.sql, *fast.params({"pin": pin}))
            row = None if found is None else dict(zip(_PIN_COLUMNS, found, strict=True))
        else:
            row = await self._one(_PIN_LOOKUP, {"pin": pin})
        if row is None:
            return None
        room = _room(row)
        role = room.role_for_pin(pin)
        assert role is not None
        return room, role

    async def pin_in_use(self, pin: str) -> bool:
        row = await self._one(sa.select(t.room_pins.c.pin).where(t.room_pins.c.pin == pin))
        return row is not None

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
        async with self._tx() as conn:
            await conn.execute(
                sa.insert(t.access_numbers),
                {"number": e164, "country": cc, "language": Language(language).value,
                 "room_id": room_id},
            )
        return AccessNumber(number=e164, country=cc, language=Language(language), room_id=room_id)

    async def lookup_access_number(self, number: str) -> AccessNumber | None:
        """The access number a call was made to (any E.164 spelling), None if unknown."""
        try:
            e164 = normalize_e164(number)
        except NumberError:
            return None
        row = await self._one(
            sa.select(t.access_numbers).where(t.access_numbers.c.number == e164)
        )
        return None if row is None else _access_number(row)

    async def list_access_numbers(self) -> list[AccessNumber]:
        rows = await self._all(
            sa.select(t.access_numbers).order_by(
                t.access_numbers.c.country, t.access_numbers.c.number
            )
        )
        return [_access_number(r) for r in rows]

    async def delete_access_number(self, number: str) -> bool:
        e164 = normalize_e164(number)
        async with self._tx() as conn:
            result = await conn.execute(
                sa.delete(t.access_numbers).where(t.access_numbers.c.number == e164)
            )
            return bool(result.rowcount == 1)

    # -- call records ------------------------------------------------------------------------

    async def _fast_write(self, steps: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """SQLite hot path: statements on the driver connection in one BEGIN IMMEDIATE."""
        import sqlite3

        db = self._raw
        out: list[Any] = []
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in steps:
                    async with db.execute(sql, params) as cur:
                        out.append(await cur.fetchone() if "RETURNING" in sql else cur.rowcount)
                await db.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                await db.execute("ROLLBACK")
                raise NotFoundError(str(exc)) from exc
            except BaseException:
                if db.in_transaction:
                    await db.execute("ROLLBACK")
                raise
        return out

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
        values = {
            "room_id": room_id,
            "leg_id": leg_id,
            "number_dialed": number_dialed,
            "caller": caller,
            "source": source,
            "role": Role(role).value,
            "language": Language(language).value,
            "joined_at": joined_at,
            "node_id": node_id,
            "run_id": run_id,
            "direction": Direction(direction).value,
            "answered_at": answered_at,
            "conference_at": conference_at,
        }
        if self._raw is not None:
            fast = self._fast["open"]
            [found] = await self._fast_write([(fast.sql, fast.params(values))])
            record_id = None if found is None else found[0]
        elif "open" in self._fast:
            fast = self._fast["open"]
            async with self._pg_driver() as driver:  # one statement: atomic in autocommit
                record_id = await driver.fetchval(fast.sql, *fast.params(values))
        else:
            async with self._tx() as conn:
                record_id = (await conn.execute(_OPEN_RECORD, values)).scalar()
        if record_id is None:
            raise NotFoundError(f"no room {room_id}")
        return int(record_id)

    async def close_call_record(
        self, record_id: int, *, left_at: float, reason: LeaveReason, ended_by: str | None = None
    ) -> bool:
        """Close an open record. False if it was closed already (the first close wins)."""
        values = {
            "record_id": record_id,
            "left_at": left_at,
            "reason": LeaveReason(reason).value,
            "ended_by": ended_by,
        }
        if self._raw is not None:
            fast = self._fast["close"]
            [count] = await self._fast_write([(fast.sql, fast.params(values))])
        elif "close" in self._fast:
            fast = self._fast["close"]
            async with self._pg_driver() as driver:
                status = await driver.execute(fast.sql, *fast.params(values))
            count = int(str(status).rsplit(" ", 1)[-1])  # "UPDATE 1"
        else:
            async with self._tx() as conn:
                count = (await conn.execute(_CLOSE_RECORD, values)).rowcount
        if count == 1:
            return True
        if await self._one(_RECORD_EXISTS, {"record_id": record_id}) is None:
            raise NotFoundError(f"no call record {record_id}")
        return False

    async def mark_in_conference(self, record_id: int, at: float) -> bool:
        """Start the leg's conference time (the moderator is present); False if it was
        started already or the record is closed."""
        async with self._tx() as conn:
            result = await conn.execute(
                sa.update(_cr)
                .where(_cr.c.id == record_id, _cr.c.conference_at.is_(None),
                       _cr.c.left_at.is_(None))
                .values(conference_at=at)
            )
            if result.rowcount == 1:
                return True
            found = await conn.execute(_RECORD_EXISTS, {"record_id": record_id})
            if found.first() is None:
                raise NotFoundError(f"no call record {record_id}")
            return False

    async def close_interrupted(self, node_id: str, now: float) -> int:
        """Close every record ``node_id`` left open as ``interrupted``, and end its open runs.

        Call at start-up, before taking calls (or from another node when ``node_id``'s
        heartbeat went stale). The end time is the node's last heartbeat when it wrote one
        (the crash happened within one interval after it), else ``now``; never before the
        record's join. Returns how many records were closed.
        """
        hb = t.node_heartbeats
        async with self._tx() as conn:
            beat = (await conn.execute(sa.select(hb.c.at).where(hb.c.node_id == node_id))).scalar()
            at = now if beat is None else min(float(beat), now)
            result = await conn.execute(
                sa.update(_cr)
                .where(_cr.c.node_id == node_id, _cr.c.left_at.is_(None))
                .values(
                    left_at=_greatest(sa.literal(at, sa.Float), _cr.c.joined_at),
                    leave_reason=LeaveReason.INTERRUPTED.value,
                )
            )
            await conn.execute(sa.delete(t.pin_attempts).where(t.pin_attempts.c.node_id == node_id))
            await conn.execute(sa.delete(t.ivr_slots).where(t.ivr_slots.c.node_id == node_id))
            await conn.execute(
                sa.update(t.runs)
                .where(t.runs.c.node_id == node_id, t.runs.c.ended_at.is_(None))
                .values(
                    ended_at=_greatest(sa.literal(at, sa.Float), t.runs.c.opened_at),
                    end_reason=RunEnd.INTERRUPTED.value,
                )
            )
            return int(result.rowcount)

    async def live_call_records(self, room_id: int | None = None) -> list[CallRecord]:
        """Open records (legs in a conference now, on every node sharing the database)."""
        query = sa.select(_cr).where(_cr.c.left_at.is_(None))
        if room_id is not None:
            query = query.where(_cr.c.room_id == room_id)
        rows = await self._all(query.order_by(_cr.c.joined_at, _cr.c.id))
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
        query = sa.select(_cr)
        if run_id is not None:
            query = query.where(_cr.c.run_id == run_id)
        if room_id is not None:
            query = query.where(_cr.c.room_id == room_id)
        if account_id is not None:
            query = query.where(_cr.c.account_id == account_id)
        if since is not None:
            query = query.where(_cr.c.joined_at >= since)
        if until is not None:
            query = query.where(_cr.c.joined_at < until)
        rows = await self._all(
            query.order_by(_cr.c.joined_at.desc(), _cr.c.id.desc()).limit(limit)
        )
        return [_call_record(r) for r in rows]

    # -- conference runs -------------------------------------------------------------------

    async def open_run(self, *, room_id: int, opened_at: float, node_id: str) -> Run:
        """Start a run of ``room_id`` on ``node_id``; raises ``NotFoundError`` for no room."""
        runs = t.runs
        async with self._tx() as conn:
            result = await conn.execute(
                sa.insert(runs)
                .from_select(
                    ["room_id", "account_id", "node_id", "opened_at"],
                    sa.select(
                        _r.c.id,
                        _r.c.account_id,
                        sa.literal(node_id, sa.Text),
                        sa.literal(opened_at, sa.Float),
                    ).where(_r.c.id == room_id),
                )
                .returning(*runs.c)
            )
            row = result.mappings().first()
            if row is None:
                raise NotFoundError(f"no room {room_id}")
            return _run(row)

    async def note_run_peak(self, run_id: int, participants: int) -> None:
        """Raise the run's peak to ``participants`` if that is higher."""
        async with self._tx() as conn:
            await conn.execute(
                sa.update(t.runs)
                .where(t.runs.c.id == run_id, t.runs.c.peak_participants < participants)
                .values(peak_participants=participants)
            )

    async def end_run(self, run_id: int, *, ended_at: float, reason: RunEnd) -> bool:
        """End an open run; False if it was ended already (the first end wins)."""
        async with self._tx() as conn:
            result = await conn.execute(
                sa.update(t.runs)
                .where(t.runs.c.id == run_id, t.runs.c.ended_at.is_(None))
                .values(ended_at=ended_at, end_reason=RunEnd(reason).value)
            )
            if result.rowcount == 1:
                return True
            found = await conn.execute(sa.select(t.runs.c.id).where(t.runs.c.id == run_id))
            if found.first() is None:
                raise NotFoundError(f"no run {run_id}")
            return False

    async def get_run(self, run_id: int) -> Run | None:
        row = await self._one(sa.select(t.runs).where(t.runs.c.id == run_id))
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
        runs = t.runs
        query = sa.select(runs)
        if account_id is not None:
            query = query.where(runs.c.account_id == account_id)
        if room_id is not None:
            query = query.where(runs.c.room_id == room_id)
        if since is not None:
            query = query.where(runs.c.opened_at >= since)
        if until is not None:
            query = query.where(runs.c.opened_at < until)
        rows = await self._all(
            query.order_by(runs.c.opened_at.desc(), runs.c.id.desc()).limit(limit)
        )
        return [_run(r) for r in rows]

    # -- API tokens --------------------------------------------------------------------------

    async def create_api_token(
        self, *, account_id: int, name: str, token_hash: str, created_at: float
    ) -> ApiToken:
        """Store a token (its hash only); ``DuplicateError("token_hash")`` if it exists."""
        async with self._tx() as conn:
            result = await conn.execute(
                sa.insert(t.api_tokens).returning(*t.api_tokens.c),
                {"account_id": account_id, "name": name, "token_hash": token_hash,
                 "created_at": created_at},
            )
            return _api_token(result.mappings().one())

    async def find_api_token(self, token_hash: str) -> ApiToken | None:
        """The token with this hash, revoked ones too (the caller checks ``revoked_at``)."""
        row = await self._one(
            sa.select(t.api_tokens).where(t.api_tokens.c.token_hash == token_hash)
        )
        return None if row is None else _api_token(row)

    async def list_api_tokens(self, account_id: int) -> list[ApiToken]:
        rows = await self._all(
            sa.select(t.api_tokens)
            .where(t.api_tokens.c.account_id == account_id)
            .order_by(t.api_tokens.c.id)
        )
        return [_api_token(r) for r in rows]

    async def revoke_api_token(self, token_id: int, at: float) -> bool:
        """Revoke a token; False if it was revoked already or does not exist."""
        async with self._tx() as conn:
            result = await conn.execute(
                sa.update(t.api_tokens)
                .where(t.api_tokens.c.id == token_id, t.api_tokens.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
            return bool(result.rowcount == 1)

    async def touch_api_token(self, token_id: int, at: float) -> None:
        async with self._tx() as conn:
            await conn.execute(
                sa.update(t.api_tokens).where(t.api_tokens.c.id == token_id)
                .values(last_used_at=at)
            )

    # -- heartbeats --------------------------------------------------------------------------

    async def write_heartbeat(self, node_id: str, now: float) -> None:
        """Record that ``node_id`` is alive at ``now`` (never moves backwards)."""
        hb = t.node_heartbeats
        insert = (
            pg_dialect.insert(hb) if self.dialect == "postgresql" else sqlite_dialect.insert(hb)
        )
        statement = insert.values(node_id=node_id, at=now)
        statement = statement.on_conflict_do_update(
            index_elements=[hb.c.node_id],
            set_={"at": _greatest(hb.c.at, statement.excluded.at)},
        )
        async with self._tx() as conn:
            await conn.execute(statement)

    async def last_heartbeat(self, node_id: str) -> float | None:
        hb = t.node_heartbeats
        row = await self._one(sa.select(hb.c.at).where(hb.c.node_id == node_id))
        return None if row is None else float(row["at"])

    async def stale_nodes(self, before: float) -> list[str]:
        """Nodes whose last heartbeat is older than ``before`` and that still hold open
        records or runs (the ones another node must clean up)."""
        hb = t.node_heartbeats
        runs = t.runs
        holds = sa.or_(
            sa.exists().where(_cr.c.node_id == hb.c.node_id, _cr.c.left_at.is_(None)),
            sa.exists().where(runs.c.node_id == hb.c.node_id, runs.c.ended_at.is_(None)),
        )
        rows = await self._all(
            sa.select(hb.c.node_id).where(hb.c.at < before, holds).order_by(hb.c.node_id)
        )
        return [str(r["node_id"]) for r in rows]

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
        async with self._tx() as conn:
            result = await conn.execute(
                sa.insert(t.rejections).returning(t.rejections.c.id),
                {"at": at, "number_dialed": number_dialed, "caller": caller, "source": source,
                 "reason": RejectionReason(reason).value, "room_id": room_id,
                 "node_id": node_id},
            )
            return int(result.scalar_one())

    async def count_recent_pin_failures(self, source: str, since: float) -> int:
        """Wrong PINs of ``source`` since ``since``, plus its tries in flight (reserved by
        ``reserve_pin_attempt`` and not released yet) -- on every node."""
        row = await self._one(sa.select(_used(source, since).label("n")))
        return 0 if row is None else int(row["n"])

    async def _lock_source(self, conn: AsyncConnection, key: str) -> None:
        """Serialise the budget checks of one source across nodes for this transaction
        (SQLite: the write lock of BEGIN IMMEDIATE does it already)."""
        if self.dialect == "postgresql":
            await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))

    async def reserve_pin_attempt(
        self, *, source: str, since: float, limit: int, now: float, node_id: str
    ) -> int | None:
        """Reserve one PIN try of ``source`` before the lookup: None when its wrong PINs
        since ``since`` plus its tries in flight reached ``limit`` (the caller is refused);
        else the reservation, released by ``release_pin_attempt`` once the outcome (a
        ``wrong_pin`` rejection, or the join) is written. Atomic across nodes: the count
        and the insert run under a per-source lock (PostgreSQL: an advisory lock)."""
        pa = t.pin_attempts
        async with self._tx() as conn:
            await self._lock_source(conn, f"pin:{source}")
            insert = (
                sa.insert(pa)
                .from_select(
                    ["source", "at", "node_id"],
                    sa.select(
                        sa.literal(source, sa.Text),
                        sa.literal(now, sa.Float),
                        sa.literal(node_id, sa.Text),
                    ).where(_used(source, since) < limit),
                )
                .returning(pa.c.id)
            )
            found = (await conn.execute(insert)).scalar()
            return None if found is None else int(found)

    async def release_pin_attempt(self, attempt_id: int) -> None:
        async with self._tx() as conn:
            await conn.execute(sa.delete(t.pin_attempts).where(t.pin_attempts.c.id == attempt_id))

    async def enter_ivr(
        self, *, call_id: str, source: str, limit: int, now: float, node_id: str
    ) -> bool:
        """Take one of the ``limit`` IVR places of ``source`` for ``call_id``; False when
        they are all taken (on any node). ``leave_ivr`` gives it back."""
        slots = t.ivr_slots
        async with self._tx() as conn:
            await self._lock_source(conn, f"ivr:{source}")
            held = sa.select(sa.func.count()).where(slots.c.source == source).scalar_subquery()
            result = await conn.execute(
                sa.insert(slots).from_select(
                    ["call_id", "source", "node_id", "at"],
                    sa.select(
                        sa.literal(call_id, sa.Text),
                        sa.literal(source, sa.Text),
                        sa.literal(node_id, sa.Text),
                        sa.literal(now, sa.Float),
                    ).where(held < limit),
                )
            )
            return bool(result.rowcount == 1)

    async def leave_ivr(self, call_id: str) -> None:
        async with self._tx() as conn:
            await conn.execute(sa.delete(t.ivr_slots).where(t.ivr_slots.c.call_id == call_id))

    async def list_rejections(
        self, *, since: float | None = None, source: str | None = None, limit: int = 1000
    ) -> list[Rejection]:
        rj = t.rejections
        query = sa.select(rj)
        if since is not None:
            query = query.where(rj.c.at >= since)
        if source is not None:
            query = query.where(rj.c.source == source)
        rows = await self._all(query.order_by(rj.c.at.desc(), rj.c.id.desc()).limit(limit))
        return [_rejection(r) for r in rows]


_PIN_COLUMNS = tuple(c.name for c in _PIN_LOOKUP.selected_columns)


def _used(source: str, since: float) -> sa.ColumnElement[int]:
    """The PIN budget ``source`` used since ``since``: wrong PINs plus tries in flight."""
    rj = t.rejections
    pa = t.pin_attempts
    failures = (
        sa.select(sa.func.count())
        .where(rj.c.source == source, rj.c.reason == RejectionReason.WRONG_PIN.value,
               rj.c.at >= since)
        .scalar_subquery()
    )
    in_flight = (
        sa.select(sa.func.count()).where(pa.c.source == source, pa.c.at >= since)
        .scalar_subquery()
    )
    return failures + in_flight


async def open_for_serving(database: str | os.PathLike[str]) -> SqlStore | None:
    """The store for ``bridge serve``: an empty database gets the schema, one that is behind
    is refused with one line on stderr naming ``bridge db upgrade`` (None: exit 1)."""
    import sys

    engine = make_engine(database)
    try:
        status = await schema_status(engine)
        if status.current is None:
            await upgrade(engine)
    except (StoreError, sa.exc.SQLAlchemyError, OSError) as exc:
        print(f"bridge: database {describe(async_url(database))}: {exc}", file=sys.stderr)
        return None
    finally:
        await engine.dispose()
    try:
        return await SqlStore.open(database, upgrade_schema=False)
    except (StoreError, sa.exc.SQLAlchemyError, OSError) as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return None
