"""claim keys: the tie-break among equal claim times, carried by a reassigned direct assignment

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 23:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("direct_assignments", sa.Column("claim_key", sa.String(36), nullable=True))
    # until now claim order was (claim_at, user_id): every license's key is its user's id
    op.add_column("licenses", sa.Column("claim_key", sa.String(36), nullable=True))
    op.execute("UPDATE licenses SET claim_key = user_id")
    with op.batch_alter_table("licenses") as batch:
        batch.alter_column("claim_key", existing_type=sa.String(36), nullable=False)
    op.drop_index("ix_licenses_order", table_name="licenses")
    op.create_index(
        "ix_licenses_order",
        "licenses",
        ["tenant_id", "plan_id", "active", "claim_at", "claim_key", "user_id"],
    )
    # a work table, empty between transactions
    op.execute("DELETE FROM work_desired")
    with op.batch_alter_table("work_desired") as batch:
        batch.add_column(sa.Column("claim_key", sa.String(36), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("work_desired") as batch:
        batch.drop_column("claim_key")
    op.drop_index("ix_licenses_order", table_name="licenses")
    op.create_index(
        "ix_licenses_order", "licenses", ["tenant_id", "plan_id", "active", "claim_at", "user_id"]
    )
    with op.batch_alter_table("licenses") as batch:
        batch.drop_column("claim_key")
    with op.batch_alter_table("direct_assignments") as batch:
        batch.drop_column("claim_key")
