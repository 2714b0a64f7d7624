"""Schema 1: accounts, rooms, PINs, access numbers, call records, rejections.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text),
        sa.Column("tariff", sa.Text, nullable=False, server_default="standard"),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("accounts_email", "accounts", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "rooms",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "account_id",
            sa.Integer,
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("max_participants", sa.Integer),
        sa.Column("language", sa.Text, nullable=False, server_default="en"),
        sa.Column("intro_path", sa.Text),
        sa.Column("wait_for_moderator", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("locked", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("account_id", "name", name="rooms_account_id_name_key"),
        sa.CheckConstraint(
            "max_participants IS NULL OR max_participants > 0",
            name="rooms_max_participants_check",
        ),
    )
    # The only place PINs live: the primary key makes a PIN unique across rooms AND roles, so
    # one PIN prompt finds both the room and the role (race-free across nodes).
    op.create_table(
        "room_pins",
        sa.Column("pin", sa.Text, nullable=False),
        sa.Column(
            "room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("role", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("pin", name="room_pins_pkey"),
        sa.UniqueConstraint("room_id", "role", name="room_pins_room_id_role_key"),
    )
    op.create_table(
        "access_numbers",
        sa.Column("number", sa.Text, nullable=False),
        sa.Column("country", sa.Text, nullable=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="SET NULL")),
        sa.PrimaryKeyConstraint("number", name="access_numbers_pkey"),
    )
    op.create_table(
        "call_records",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="SET NULL")),
        sa.Column("account_id", sa.Integer, nullable=False),
        sa.Column("leg_id", sa.Text, nullable=False),
        sa.Column("number_dialed", sa.Text, nullable=False),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("joined_at", sa.Float, nullable=False),
        sa.Column("left_at", sa.Float),
        sa.Column("leave_reason", sa.Text),
        sa.Column("node_id", sa.Text, nullable=False),
        sa.CheckConstraint(
            "(left_at IS NULL) = (leave_reason IS NULL)", name="call_records_left_check"
        ),
    )
    where = sa.text("left_at IS NULL")
    op.create_index(
        "call_records_open", "call_records", ["node_id"], sqlite_where=where, postgresql_where=where
    )
    op.create_index("call_records_room", "call_records", ["room_id", "joined_at"])
    op.create_index("call_records_account", "call_records", ["account_id", "joined_at"])
    op.create_table(
        "rejections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("number_dialed", sa.Text, nullable=False),
        sa.Column("caller", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="SET NULL")),
        sa.Column("node_id", sa.Text, nullable=False),
    )
    op.create_index("rejections_at", "rejections", ["at"])


def downgrade() -> None:
    for table in ("rejections", "call_records", "access_numbers", "room_pins", "rooms"):
        op.drop_table(table)
    op.drop_index("accounts_email", "accounts")
    op.drop_table("accounts")
