"""tenant issuers are unique

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 20:40:22.228878
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # an index: on SQLite a unique constraint would mean rebuilding the table that everything references
    op.create_index("uq_tenants_issuer", "tenants", ["issuer"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_tenants_issuer", table_name="tenants")
