"""The one schema of the store, for SQLite and PostgreSQL alike (SQLAlchemy Core tables).

The tables are what the Alembic revisions in ``bridge/store/migrations/versions`` build, in
the same order; the store's queries are written against these objects. All times are UTC
epoch seconds (``Float``: REAL on SQLite, double precision on PostgreSQL). Enumerated text
columns (role, language, reasons) are validated by the Python enums, not by CHECK, so a new
value needs no table rebuild.

Names of unique constraints are fixed (they are how a clash is told apart on PostgreSQL):
``room_pins_pkey`` (a PIN is unique across rooms AND roles), ``rooms_account_id_name_key``,
``access_numbers_pkey``, ``accounts_email`` (on ``lower(email)``), ``api_tokens_token_hash_key``,
``pin_attempts`` counts the PIN tries of a source across every node sharing the database.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text),
    sa.Column("tariff", sa.Text, nullable=False, server_default="standard"),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
)
sa.Index("accounts_email", sa.func.lower(accounts.c.email), unique=True)

rooms = sa.Table(
    "rooms",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("max_participants", sa.Integer),
    sa.Column("language", sa.Text, nullable=False, server_default="en"),
    sa.Column("intro_path", sa.Text),
    sa.Column("wait_for_moderator", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("locked", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("starts_at", sa.Float),
    sa.Column("ends_at", sa.Float),
    sa.UniqueConstraint("account_id", "name", name="rooms_account_id_name_key"),
    sa.CheckConstraint(
        "max_participants IS NULL OR max_participants > 0", name="rooms_max_participants_check"
    ),
)

room_pins = sa.Table(
    "room_pins",
    metadata,
    sa.Column("pin", sa.Text, nullable=False),
    sa.Column(
        "room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("role", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("pin", name="room_pins_pkey"),
    sa.UniqueConstraint("room_id", "role", name="room_pins_room_id_role_key"),
)

access_numbers = sa.Table(
    "access_numbers",
    metadata,
    sa.Column("number", sa.Text, nullable=False),
    sa.Column("country", sa.Text, nullable=False),
    sa.Column("language", sa.Text, nullable=False),
    sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="SET NULL")),
    sa.PrimaryKeyConstraint("number", name="access_numbers_pkey"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="SET NULL")),
    sa.Column("account_id", sa.Integer, nullable=False),
    sa.Column("node_id", sa.Text, nullable=False),
    sa.Column("opened_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float),
    sa.Column("end_reason", sa.Text),
    sa.Column("peak_participants", sa.Integer, nullable=False, server_default="0"),
    sa.CheckConstraint("(ended_at IS NULL) = (end_reason IS NULL)", name="runs_end_check"),
)

call_records = sa.Table(
    "call_records",
    metadata,
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
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id", ondelete="SET NULL")),
    sa.Column("direction", sa.Text, nullable=False, server_default="dial_in"),
    sa.Column("answered_at", sa.Float),
    sa.Column("conference_at", sa.Float),
    sa.Column("ended_by", sa.Text),
    sa.CheckConstraint(
        "(left_at IS NULL) = (leave_reason IS NULL)", name="call_records_left_check"
    ),
)

rejections = sa.Table(
    "rejections",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("number_dialed", sa.Text, nullable=False),
    sa.Column("caller", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("room_id", sa.Integer, sa.ForeignKey("rooms.id", ondelete="SET NULL")),
    sa.Column("node_id", sa.Text, nullable=False),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column(
        "account_id", sa.Integer, sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("token_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
    sa.Column("last_used_at", sa.Float),
    sa.UniqueConstraint("token_hash", name="api_tokens_token_hash_key"),
)

node_heartbeats = sa.Table(
    "node_heartbeats",
    metadata,
    sa.Column("node_id", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("node_id", name="node_heartbeats_pkey"),
)

pin_attempts = sa.Table(
    "pin_attempts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("node_id", sa.Text, nullable=False),
)
sa.Index("pin_attempts_source", pin_attempts.c.source, pin_attempts.c.at)

ivr_slots = sa.Table(
    "ivr_slots",
    metadata,
    sa.Column("call_id", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("node_id", sa.Text, nullable=False),
    sa.Column("at", sa.Float, nullable=False),
    sa.PrimaryKeyConstraint("call_id", name="ivr_slots_pkey"),
)
sa.Index("ivr_slots_source", ivr_slots.c.source)
