"""``bridge db upgrade`` and ``bridge db check``: the schema of the configured database.

``check`` prints the revision the database is at, the newest this bridge knows and the
pending revisions; exit 0 when up to date, 1 when behind, newer than this bridge, or the
database cannot be reached. ``upgrade`` applies the pending revisions (one transaction);
exit 0, or 1 when refused. Usage errors exit 2 (the CLI's convention).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from bridge.store.base import StoreError
from bridge.store.migrate import async_url, describe, make_engine, schema_status, upgrade

__all__ = ["check", "run_upgrade"]


async def _check(database: Path | str) -> tuple[int, str]:
    engine = make_engine(database)
    try:
        status = await schema_status(engine)
    finally:
        await engine.dispose()
    where = describe(async_url(database))
    current = status.current or "none (empty database)"
    if status.up_to_date:
        return 0, f"{where}: schema revision {current}, up to date"
    return 1, (
        f"{where}: schema revision {current}, this bridge has {status.head}; pending: "
        f"{' '.join(status.pending)} -- run `bridge db upgrade`"
    )


async def _upgrade(database: Path | str) -> tuple[int, str]:
    engine = make_engine(database)
    try:
        before = await schema_status(engine)
        reached = await upgrade(engine)
    finally:
        await engine.dispose()
    where = describe(async_url(database))
    if not before.pending:
        return 0, f"{where}: schema revision {reached}, already up to date"
    return 0, f"{where}: upgraded from {before.current or 'an empty database'} to {reached}"


def _run(action: str, database: Path | str) -> int:
    try:
        status, line = asyncio.run(_check(database) if action == "check" else _upgrade(database))
    except (StoreError, SQLAlchemyError, OSError) as exc:
        print(f"bridge: database {os.fspath(database)}: {exc}", file=sys.stderr)
        return 1
    print(line, file=sys.stdout if status == 0 else sys.stderr)
    return status


def check(database: Path | str) -> int:
    return _run("check", database)


def run_upgrade(database: Path | str) -> int:
    return _run("upgrade", database)
