"""Alembic environment: runs against the connection that licensedesk.db.migrate passes in."""

from __future__ import annotations

from alembic import context

from licensedesk.db.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through licensedesk.db.migrate (or `licensedesk db upgrade`)")
context.configure(
    connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite"
)
with context.begin_transaction():
    context.run_migrations()
