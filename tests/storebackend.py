"""The databases the store tests run on: a SQLite file and a real PostgreSQL database (from the
server of tests/pgserver.py). ``Backend.rows`` reads with a connection of its own, independent
of the store under test (``:name`` parameters, valid on both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bridge.store.migrate import async_url
from bridge.store.sql import SqlStore

__all__ = ["Backend"]


@dataclass(frozen=True, slots=True)
class Backend:
    name: str  # "sqlite" or "postgresql"
    url: str

    async def open(self, **options: Any) -> SqlStore:
        return await SqlStore.open(self.url, **options)

    async def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        engine = create_async_engine(async_url(self.url), poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(sa.text(sql), params)
                return [tuple(r) for r in result.all()]
        finally:
            await engine.dispose()
