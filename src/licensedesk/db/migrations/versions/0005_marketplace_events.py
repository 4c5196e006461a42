"""marketplace events

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 20:48:15.269318
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "marketplace_events",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("subscription_external_id", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("time_stamp", sa.DateTime(), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_marketplace_events")),
    )
    with op.batch_alter_table("marketplace_events", schema=None) as batch_op:
        batch_op.create_index("uq_marketplace_events_id", ["id"], unique=True)

    # a plain ALTER TABLE ADD COLUMN on both databases (no table rebuild on SQLite)
    op.add_column("subscriptions", sa.Column("last_event_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("last_event_at")  # SQLite rebuilds the table for this

    with op.batch_alter_table("marketplace_events", schema=None) as batch_op:
        batch_op.drop_index("uq_marketplace_events_id")

    op.drop_table("marketplace_events")
