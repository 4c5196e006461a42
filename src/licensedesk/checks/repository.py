"""The few queries of the run-time check. It reads users, licenses and the catalog directly: the check
path is kept small and close to the data, and every query takes tenant_id first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from licensedesk.db.schema import licenses, plans, products, tenants, users


def product(conn: Connection, product_id: str) -> Any:
    return conn.execute(select(products).where(products.c.id == product_id)).first()


def product_plans(conn: Connection, product_id: str) -> dict[str, str]:
    """plan id -> spIdentifier of the product's plans."""
    rows = conn.execute(select(plans.c.id, plans.c.sp_identifier).where(plans.c.product_id == product_id))
    return {r.id: r.sp_identifier for r in rows}


def tenant_by_ref(conn: Connection, ref: str) -> Any:
    return conn.execute(select(tenants).where(or_(tenants.c.id == ref, tenants.c.slug == ref))).first()


def tenants_with_issuers(conn: Connection) -> list[Any]:
    return list(
        conn.execute(
            select(
                tenants.c.id,
                tenants.c.slug,
                tenants.c.issuer,
                tenants.c.jwks_uri,
                tenants.c.external_tenant_id,
            ).where(tenants.c.issuer.is_not(None))
        )
    )


def find_user(conn: Connection, tenant_id: str, oid: str | None, names: Sequence[str]) -> Any:
    """The user by object id (externalId), else by userPrincipalName."""
    if oid:
        row = conn.execute(
            select(users.c.id, users.c.active).where(
                users.c.tenant_id == tenant_id, users.c.external_id == oid
            )
        ).first()
        if row is not None:
            return row
    for name in names:
        row = conn.execute(
            select(users.c.id, users.c.active).where(
                users.c.tenant_id == tenant_id, users.c.upn_key == name.lower()
            )
        ).first()
        if row is not None:
            return row
    return None


def user_license_states(conn: Connection, tenant_id: str, user_id: str) -> list[tuple[str, str]]:
    rows = conn.execute(
        select(licenses.c.plan_id, licenses.c.state).where(
            licenses.c.tenant_id == tenant_id, licenses.c.user_id == user_id
        )
    )
    return [(r.plan_id, r.state) for r in rows]


def record_usage(conn: Connection, rows: Iterable[tuple[str, str, str, datetime]]) -> None:
    """Set last_used_at of (tenant, plan, user) licenses to the given times (never backwards)."""
    data = [{"t": t, "p": p, "u": u, "at": at} for t, p, u, at in rows]
    if not data:
        return
    stmt = (
        update(licenses)
        .where(
            licenses.c.tenant_id == bindparam("t"),
            licenses.c.plan_id == bindparam("p"),
            licenses.c.user_id == bindparam("u"),
            or_(licenses.c.last_used_at.is_(None), licenses.c.last_used_at < bindparam("at")),
        )
        .values(last_used_at=bindparam("at"))
    )
    conn.execute(stmt, data)
