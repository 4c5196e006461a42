"""Queries of reclaiming idle seats. Every query takes tenant_id first. (Kept apart from repository.py,
whose seat engine is tuned on its own; the seat changes themselves go through it.)"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, tuple_, update

from licensedesk.db.functions import greatest
from licensedesk.db.schema import licenses, reclaim_policies, users
from licensedesk.licensing.seating import ACTIVE, WARNING

# only seats a user could have used: a waiting (Error) or Disabled user never had the chance, and a
# Suspended seat is kept whole so that reinstating the subscription restores it
RECLAIMABLE = (ACTIVE, WARNING)


def idle_since() -> Any:
    """When a seat last showed use: its last use; never used, its claim, or the license's last change when
    later (a user who waited for a seat, or was just seated, is not idle from their old claim)."""
    lic = licenses
    return func.coalesce(lic.c.last_used_at, greatest(lic.c.claim_at, lic.c.updated_at))


def policy(conn: Connection, tenant_id: str) -> Any:
    return conn.execute(select(reclaim_policies).where(reclaim_policies.c.tenant_id == tenant_id)).first()


def save_policy(conn: Connection, tenant_id: str, enabled: bool, idle_days: int, now: datetime) -> None:
    rp = reclaim_policies
    if policy(conn, tenant_id) is None:
        conn.execute(
            insert(rp).values(tenant_id=tenant_id, enabled=enabled, idle_days=idle_days, updated_at=now)
        )
    else:
        conn.execute(
            update(rp)
            .where(rp.c.tenant_id == tenant_id)
            .values(enabled=enabled, idle_days=idle_days, updated_at=now)
        )


def mark_run(conn: Connection, tenant_id: str, now: datetime) -> None:
    rp = reclaim_policies
    conn.execute(update(rp).where(rp.c.tenant_id == tenant_id).values(last_run_at=now))


def enabled_policies(conn: Connection) -> list[Any]:
    """Every tenant whose policy is on (the worker's round; it crosses tenants as the job queue does)."""
    rp = reclaim_policies
    return list(conn.execute(select(rp).where(rp.c.enabled.is_(True)).order_by(rp.c.tenant_id)))


def idle_direct(
    conn: Connection,
    tenant_id: str,
    idle_before: datetime,
    *,
    plan_id: str | None = None,
    after: tuple[Any, ...] | None = None,
    limit: int,
) -> list[Any]:
    """Seated licenses with a direct assignment whose last use (or, never used, whose claim) is before
    `idle_before`, ordered by plan and claim order."""
    lic = licenses
    last = idle_since()
    stmt = (
        select(
            lic.c.plan_id,
            lic.c.user_id,
            lic.c.state,
            lic.c.claim_at,
            lic.c.last_used_at,
            lic.c.via_group,
            last.label("idle_since"),
            users.c.user_principal_name,
            users.c.display_name,
        )
        .join(users, and_(users.c.tenant_id == lic.c.tenant_id, users.c.id == lic.c.user_id))
        .where(
            lic.c.tenant_id == tenant_id,
            lic.c.direct.is_(True),
            lic.c.state.in_(RECLAIMABLE),
            last < idle_before,
        )
        .order_by(lic.c.plan_id, lic.c.claim_at, lic.c.user_id)
        .limit(limit)
    )
    if plan_id is not None:
        stmt = stmt.where(lic.c.plan_id == plan_id)
    if after is not None:
        stmt = stmt.where(tuple_(lic.c.plan_id, lic.c.claim_at, lic.c.user_id) > tuple_(*after))
    return list(conn.execute(stmt))


def plans_with_idle_direct(conn: Connection, tenant_id: str, idle_before: datetime) -> list[str]:
    lic = licenses
    last = idle_since()
    return list(
        conn.execute(
            select(lic.c.plan_id)
            .where(
                lic.c.tenant_id == tenant_id,
                lic.c.direct.is_(True),
                lic.c.state.in_(RECLAIMABLE),
                last < idle_before,
            )
            .distinct()
            .order_by(lic.c.plan_id)
        ).scalars()
    )
