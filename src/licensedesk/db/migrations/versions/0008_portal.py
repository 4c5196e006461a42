"""the admin portal: one-time sign-in links and the session signing key

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 22:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "portal_sign_in_links",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_portal_sign_in_links")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_portal_sign_in_links_secret_hash")),
    )
    op.create_table(
        "portal_keys",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "purpose", name=op.f("pk_portal_keys")),
    )


def downgrade() -> None:
    op.drop_table("portal_keys")
    op.drop_table("portal_sign_in_links")
