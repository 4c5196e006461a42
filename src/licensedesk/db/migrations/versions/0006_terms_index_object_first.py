"""directory terms: the reverse index leads with the object; an index for searches of one kind

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 21:15:00
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # With (tenant, kind, object, ...) SQLite could plan a user search as a walk over every user's terms.
    op.drop_index("ix_directory_terms_object", table_name="directory_terms")
    op.create_index(
        "ix_directory_terms_object", "directory_terms", ["tenant_id", "object_id", "kind", "term", "rank"]
    )
    op.create_index(
        "ix_directory_terms_kind", "directory_terms", ["tenant_id", "kind", "term", "rank", "object_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_directory_terms_kind", table_name="directory_terms")
    op.drop_index("ix_directory_terms_object", table_name="directory_terms")
    op.create_index(
        "ix_directory_terms_object", "directory_terms", ["tenant_id", "kind", "object_id", "term", "rank"]
    )
