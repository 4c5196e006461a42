"""The Alembic migrations build exactly the schema the code declares, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from licensedesk.db.migrate import head_revision, is_current
from licensedesk.db.schema import metadata


def test_migrations_match_the_declared_schema(db):
    assert is_current(db)
    assert head_revision() is not None
    with db.engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(mc, metadata)
    assert diff == []


def test_every_tenant_owned_table_has_a_primary_key_starting_with_tenant_id():
    for table in metadata.sorted_tables:
        if "tenant_id" in table.c:
            assert next(iter(table.primary_key.columns)).name == "tenant_id", table.name


def test_sqlite_runs_in_wal_mode_with_foreign_keys(db, backend):
    if backend != "sqlite":
        return
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
