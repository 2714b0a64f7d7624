"""Alembic environment: the connection is handed over by ``bridge.store.migrate`` (run in code,
never from an ini file)."""

from __future__ import annotations

from alembic import context

from bridge.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    transaction_per_migration=False,
)
with context.begin_transaction():
    context.run_migrations()
