"""the admin portal's live sessions (signing out ends a session server-side), and the audit log's target
index ending in the id that breaks ties in its order (without it SQLite walks the whole log by time to find
a target's events, seconds at a million users)

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
    op.drop_index("ix_audit_events_target", table_name="audit_events")
    op.create_index("ix_audit_events_target", "audit_events", ["tenant_id", "target_id", "at", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_target", table_name="audit_events")
    op.create_index("ix_audit_events_target", "audit_events", ["tenant_id", "target_id", "at"])
    op.drop_index("ix_portal_sessions_expires_at", table_name="portal_sessions")
    op.drop_table("portal_sessions")
