"""Queries of subscriptions. Every query takes tenant_id first (but the lifecycle's due scan, which the
worker runs for all tenants)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from licensedesk.db.schema import subscriptions as subs


def insert_subscription(conn: Connection, **values: Any) -> None:
    conn.execute(insert(subs).values(**values))


def subscription(conn: Connection, tenant_id: str, subscription_id: str) -> Any:
    return conn.execute(
        select(subs).where(subs.c.tenant_id == tenant_id, subs.c.id == subscription_id)
    ).first()


def by_external_id(conn: Connection, tenant_id: str, external_id: str) -> Any:
    return conn.execute(
        select(subs).where(subs.c.tenant_id == tenant_id, subs.c.external_id == external_id)
    ).first()


def update_subscription(conn: Connection, tenant_id: str, subscription_id: str, **values: Any) -> None:
    conn.execute(
        update(subs).where(subs.c.tenant_id == tenant_id, subs.c.id == subscription_id).values(**values)
    )


def plan_subscriptions(conn: Connection, tenant_id: str, plan_id: str) -> list[Any]:
    return list(conn.execute(select(subs).where(subs.c.tenant_id == tenant_id, subs.c.plan_id == plan_id)))


def page(
    conn: Connection,
    tenant_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
    plan_id: str | None = None,
) -> list[Any]:
    stmt = (
        select(subs).where(subs.c.tenant_id == tenant_id).order_by(subs.c.created_at, subs.c.id).limit(limit)
    )
    if plan_id is not None:
        stmt = stmt.where(subs.c.plan_id == plan_id)
    if after is not None:
        stmt = stmt.where(
            or_(subs.c.created_at > after[0], and_(subs.c.created_at == after[0], subs.c.id > after[1]))
        )
    return list(conn.execute(stmt))


def lifecycle_candidates(conn: Connection, now: datetime) -> list[Any]:
    """Subscriptions that time may move on: Active ones whose term or trial has ended, and every Warning
    or Suspended one (their grace and suspension periods depend on the plan)."""
    return list(
        conn.execute(
            select(subs.c.tenant_id, subs.c.id).where(
                or_(
                    and_(subs.c.status == "Active", subs.c.term_ends_at <= now),
                    and_(subs.c.status == "Active", subs.c.trial.is_(True), subs.c.trial_ends_at <= now),
                    subs.c.status.in_(["Warning", "Suspended"]),
                )
            )
        )
    )
