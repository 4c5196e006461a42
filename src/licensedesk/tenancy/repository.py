"""Queries of tenants."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, or_, select, update

from licensedesk.db.schema import tenants


def insert_tenant(conn: Connection, **values: Any) -> None:
    conn.execute(insert(tenants).values(**values))


def by_ref(conn: Connection, ref: str) -> Any:
    return conn.execute(select(tenants).where(or_(tenants.c.id == ref, tenants.c.slug == ref))).first()


def by_slug(conn: Connection, slug: str) -> Any:
    return conn.execute(select(tenants).where(tenants.c.slug == slug)).first()


def by_external_id(conn: Connection, external_tenant_id: str) -> Any:
    return conn.execute(select(tenants).where(tenants.c.external_tenant_id == external_tenant_id)).first()


def page(conn: Connection, after_slug: str | None, limit: int) -> list[Any]:
    stmt = select(tenants).order_by(tenants.c.slug).limit(limit)
    if after_slug is not None:
        stmt = stmt.where(tenants.c.slug > after_slug)
    return list(conn.execute(stmt))


def update_tenant(conn: Connection, tenant_id: str, **values: Any) -> None:
    conn.execute(update(tenants).where(tenants.c.id == tenant_id).values(**values))


def lock(conn: Connection, tenant_id: str) -> None:
    """Serialise changes to one tenant's group graph (PostgreSQL; SQLite writers are serial already).
    FOR NO KEY UPDATE does not block the foreign-key checks of inserts that reference the tenant."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(tenants.c.id).where(tenants.c.id == tenant_id).with_for_update(key_share=True))


def by_issuer(conn: Connection, issuer: str) -> list[Any]:
    return list(conn.execute(select(tenants).where(tenants.c.issuer == issuer).order_by(tenants.c.id)))
