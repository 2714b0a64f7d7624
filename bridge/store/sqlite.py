"""``SqliteStore``: the embedded ``Store`` on one SQLite file -- ``SqlStore`` (SQLAlchemy Core
over aiosqlite) opened on a path.

Durability and sharing (set up by ``bridge.store.migrate.make_engine``):

* ``journal_mode=WAL`` so readers never block the writer and several processes can use the file;
  ``synchronous=FULL`` so a committed call record survives a power cut, not only a process
  crash (the cost of FULL is one fsync per record write, a few per call);
* every write runs in its own ``BEGIN IMMEDIATE`` ... ``COMMIT`` and returns after the commit;
  ``busy_timeout`` makes a second process wait for the write lock instead of failing;
* no caching: every read queries the file, so changes made by the CLI show up at once.

Schema migrations are Alembic revisions (``bridge/store/migrations``); a file made by the
hand-written store of schema versions 1-3 is adopted in place on open.
"""

from __future__ import annotations

import os

from bridge.conference.pins import DEFAULT_PIN_POLICY, PinPolicy
from bridge.store.migrate import SchemaTooNewError, SqliteOptions
from bridge.store.sql import SqlStore

__all__ = ["SchemaTooNewError", "SqliteOptions", "SqliteStore"]


class SqliteStore(SqlStore):
    """``Store`` on one SQLite file. Open with ``await SqliteStore.open(path)``."""

    path: str

    @classmethod
    async def open(
        cls,
        db_url: str | os.PathLike[str],
        *,
        options: SqliteOptions | None = None,
        pin_policy: PinPolicy = DEFAULT_PIN_POLICY,
        upgrade_schema: bool = True,
        pool_size: int = 5,
    ) -> SqliteStore:
        """Open (creating or migrating) the file at ``db_url`` (a path or ``sqlite:///``)."""
        store = await super().open(
            db_url, options=options, pin_policy=pin_policy, upgrade_schema=upgrade_schema
        )
        assert isinstance(store, SqliteStore)
        if store.dialect != "sqlite":
            await store.close()
            raise ValueError(f"not a SQLite database: {store.url}")
        store.path = store.url
        return store
