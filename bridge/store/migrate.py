"""Database URLs, engines and migrations (Alembic, run in code) for both back ends.

``db_url`` is ``sqlite:///var/bridge.sqlite3`` (the default; a bare path means the same) or
``postgresql://user@host/db`` (``?host=/socket/dir`` for a Unix socket); the async drivers
(aiosqlite, asyncpg) are filled in here. The migration scripts are package data
(``bridge/store/migrations``); no alembic.ini is needed at run time.

A SQLite file made by the hand-written store of schema versions 1-3 (table ``schema_version``)
is adopted in place: the Alembic revision of the same number is stamped, ``schema_version`` is
dropped, and the remaining revisions run, all in one ``BEGIN IMMEDIATE`` transaction, so two
processes opening an old file at once migrate it exactly once.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bridge.store.base import StoreError

__all__ = [
    "DEFAULT_DB_URL",
    "SchemaBehindError",
    "SchemaStatus",
    "SchemaTooNewError",
    "SqliteOptions",
    "alembic_config",
    "async_url",
    "head_revision",
    "make_engine",
    "schema_status",
    "upgrade",
]

DEFAULT_DB_URL = "sqlite:///var/bridge.sqlite3"

logging.getLogger("alembic").setLevel(logging.WARNING)  # its per-plugin INFO lines are noise


class SchemaTooNewError(StoreError):
    """The database was written by a newer bridge (its revision is unknown here)."""


class SchemaBehindError(StoreError):
    """The database has pending migrations (``bridge db upgrade`` brings it up)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SqliteOptions:
    """Tuning of a SQLite connection."""

    busy_timeout: float = 10.0  # seconds a writer waits for another process's lock
    synchronous: str = "FULL"  # FULL: a committed record survives a power cut

    def __post_init__(self) -> None:
        if self.synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, NORMAL or EXTRA")


def async_url(db_url: str | os.PathLike[str]) -> sa.URL:
    """The SQLAlchemy URL with the async driver of ``db_url`` (a URL or a SQLite path)."""
    text = os.fspath(db_url)
    if "://" not in text:
        return sa.URL.create("sqlite+aiosqlite", database=text)
    url = sa.make_url(text)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database URL {url.render_as_string(hide_password=True)!r}")


def describe(url: sa.URL) -> str:
    """The URL for messages (no password)."""
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.render_as_string(hide_password=True)


def make_engine(db_url: str | os.PathLike[str] | sa.URL, options: SqliteOptions | None = None,
                *, pool_size: int = 5) -> AsyncEngine:
    """An async engine. SQLite: WAL, ``synchronous``, foreign keys, a busy timeout, and every
    transaction a ``BEGIN IMMEDIATE`` (taken by this module, not by the driver)."""
    url = db_url if isinstance(db_url, sa.URL) else async_url(db_url)
    if url.get_backend_name() != "sqlite":
        # No pre-ping (a round trip per statement): a connection found dead fails its
        # statement once and is replaced by the pool.
        return create_async_engine(url, pool_size=pool_size)
    opts = options if options is not None else SqliteOptions()
    if url.database and url.database != ":memory:":
        parent = os.path.dirname(os.path.abspath(url.database))
        os.makedirs(parent, exist_ok=True)
    engine = create_async_engine(
        url,
        connect_args={"timeout": opts.busy_timeout},
        pool_size=1,
        max_overflow=0,
        pool_timeout=3600,
        pool_reset_on_return=None,  # every transaction ends with COMMIT/ROLLBACK by itself
    )

    @sa.event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit reads; BEGIN IMMEDIATE for writes
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={opts.synchronous}",
            "foreign_keys=ON",
            f"busy_timeout={int(opts.busy_timeout * 1000)}",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa.event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # A write takes the write lock at once (no deadlock on a later upgrade from a read
        # lock); a read (info["bridge_read"] set by the store) takes a snapshot only.
        conn.exec_driver_sql("BEGIN" if conn.info.get("bridge_read") else "BEGIN IMMEDIATE")

    return engine


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(resources.files("bridge.store") / "migrations"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _legacy_version(conn: sa.Connection) -> int | None:
    inspector = sa.inspect(conn)
    if conn.dialect.name != "sqlite" or not inspector.has_table("schema_version"):
        return None
    if inspector.has_table("alembic_version"):
        return None
    return int(conn.exec_driver_sql("SELECT max(version) FROM schema_version").scalar() or 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class SchemaStatus:
    current: str | None  # the revision applied (None: an empty database)
    head: str  # the newest revision this bridge knows
    pending: list[str]  # revisions still to apply, oldest first

    @property
    def up_to_date(self) -> bool:
        return not self.pending


def status_of(conn: sa.Connection) -> SchemaStatus:
    script = ScriptDirectory.from_config(alembic_config())
    head = script.get_current_head()
    assert head is not None
    legacy = _legacy_version(conn)
    if legacy is not None:
        current: str | None = f"{legacy:04d}" if legacy else None
    else:
        current = MigrationContext.configure(conn).get_current_revision()
    known = {rev.revision for rev in script.walk_revisions()}
    if current is not None and current not in known:
        raise SchemaTooNewError(
            f"the database has schema revision {current}; this bridge knows up to {head} "
            "-- upgrade the bridge"
        )
    pending = [
        rev.revision for rev in script.iterate_revisions(head, current or "base")
    ]
    pending.reverse()
    return SchemaStatus(current=current, head=head, pending=pending)


def _upgrade(conn: sa.Connection, target: str) -> str:
    status = status_of(conn)  # raises SchemaTooNewError before anything is written
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    legacy = _legacy_version(conn)
    if legacy is not None:
        if legacy:
            command.stamp(cfg, f"{legacy:04d}")
        conn.exec_driver_sql("DROP TABLE schema_version")
    if status.pending:
        command.upgrade(cfg, target)
    current = MigrationContext.configure(conn).get_current_revision()
    assert current is not None
    return current


async def upgrade(engine: AsyncEngine, target: str = "head") -> str:
    """Apply the pending migrations in one transaction; returns the revision reached."""
    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade, target)


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    async with engine.connect() as conn:
        status = await conn.run_sync(status_of)
        await conn.rollback()
        return status
