"""the admin portal's live sessions (signing out ends a session server-side), and the audit log's filter
indexes ending in the id that breaks ties in its order (without it SQLite walks the whole log by time to
filter it, seconds at a million users)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28 01:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

AUDIT_FILTERS = (("target", "target_id"), ("actor", "actor_id"), ("action", "action"), ("plan", "plan_id"))


def upgrade() -> None:
    op.create_table(
        "portal_sessions",
        sa.Column("tenant_id", sa.String(length=36), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "id", name=op.f("pk_portal_sessions")),
    )
    op.create_index("ix_portal_sessions_expires_at", "portal_sessions", ["expires_at"])
    for name, column in AUDIT_FILTERS:
        op.drop_index(f"ix_audit_events_{name}", table_name="audit_events")
        op.create_index(f"ix_audit_events_{name}", "audit_events", ["tenant_id", column, "at", "id"])


def downgrade() -> None:
    for name, column in AUDIT_FILTERS:
        op.drop_index(f"ix_audit_events_{name}", table_name="audit_events")
        op.create_index(f"ix_audit_events_{name}", "audit_events", ["tenant_id", column, "at"])
    op.drop_index("ix_portal_sessions_expires_at", table_name="portal_sessions")
    op.drop_table("portal_sessions")
