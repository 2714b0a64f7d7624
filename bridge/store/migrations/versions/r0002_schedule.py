"""Schema 2: scheduled rooms and a fast PIN-failure count.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A room with both bounds NULL can be used at any time.
    op.add_column("rooms", sa.Column("starts_at", sa.Float))
    op.add_column("rooms", sa.Column("ends_at", sa.Float))
    where = sa.text("reason = 'wrong_pin'")
    op.create_index(
        "rejections_pin_failures",
        "rejections",
        ["source", "at"],
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index("rejections_pin_failures", "rejections")
    with op.batch_alter_table("rooms") as batch:
        batch.drop_column("ends_at")
        batch.drop_column("starts_at")
