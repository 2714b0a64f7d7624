"""Schema 3: admin accounts, conference runs, richer call records, API tokens, heartbeats.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "accounts",
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="SET NULL")),
        sa.Column("account_id", sa.Integer, nullable=False),  # kept when the room goes
        sa.Column("node_id", sa.Text, nullable=False),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float),
        sa.Column("end_reason", sa.Text),
        sa.Column("peak_participants", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint("(ended_at IS NULL) = (end_reason IS NULL)", name="runs_end_check"),
    )
    where = sa.text("ended_at IS NULL")
    op.create_index("runs_open", "runs", ["node_id"], sqlite_where=where, postgresql_where=where)
    op.create_index("runs_room", "runs", ["room_id", "opened_at"])
    op.create_index("runs_account", "runs", ["account_id", "opened_at"])
    if op.get_context().dialect.name == "sqlite":  # ADD COLUMN, no table rebuild
        op.execute(
            "ALTER TABLE call_records ADD COLUMN run_id INTEGER "
            "REFERENCES runs (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("call_records", sa.Column("run_id", sa.Integer))
        op.create_foreign_key(
            "call_records_run_id_fkey",
            "call_records",
            "runs",
            ["run_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.add_column(
        "call_records", sa.Column("direction", sa.Text, nullable=False, server_default="dial_in")
    )
    op.add_column("call_records", sa.Column("answered_at", sa.Float))
    op.add_column("call_records", sa.Column("conference_at", sa.Float))
    op.add_column("call_records", sa.Column("ended_by", sa.Text))
    op.create_index("call_records_run", "call_records", ["run_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "account_id",
            sa.Integer,
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("token_hash", sa.Text, nullable=False),  # sha256 hex of the secret
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
        sa.UniqueConstraint("token_hash", name="api_tokens_token_hash_key"),
    )
    op.create_index("api_tokens_account", "api_tokens", ["account_id"])
    op.create_table(
        "node_heartbeats",
        sa.Column("node_id", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("node_id", name="node_heartbeats_pkey"),
    )


def downgrade() -> None:
    op.drop_table("node_heartbeats")
    op.drop_table("api_tokens")
    op.drop_index("call_records_run", "call_records")
    with op.batch_alter_table("call_records") as batch:
        for column in ("ended_by", "conference_at", "answered_at", "direction", "run_id"):
            batch.drop_column(column)
    op.drop_table("runs")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("is_admin")
