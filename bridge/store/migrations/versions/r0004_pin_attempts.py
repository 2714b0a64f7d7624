"""Schema 4: PIN tries in flight and calls in the IVR, per source, shared by every node.

``pin_attempts``: one row per PIN try reserved before the lookup and deleted once its outcome
(a ``wrong_pin`` rejection, or a join) is written, so parallel calls cannot exceed the budget.
``ivr_slots``: one row per call in the IVR, so a source holds at most N calls there at once.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pin_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("node_id", sa.Text, nullable=False),
    )
    op.create_index("pin_attempts_source", "pin_attempts", ["source", "at"])
    op.create_table(
        "ivr_slots",
        sa.Column("call_id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("node_id", sa.Text, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("call_id", name="ivr_slots_pkey"),
    )
    op.create_index("ivr_slots_source", "ivr_slots", ["source"])


def downgrade() -> None:
    op.drop_table("ivr_slots")
    op.drop_table("pin_attempts")
