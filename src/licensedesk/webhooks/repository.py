"""Queries of webhooks: endpoints, the outbox of events, deliveries. Every query of a tenant's rows takes
its tenant first; global endpoints are the rows of SYSTEM_TENANT."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, delete, exists, insert, literal, or_, select, tuple_, update

from licensedesk.db.functions import new_uuid
from licensedesk.db.schema import SYSTEM_TENANT, webhook_deliveries, webhook_endpoints, webhook_events

ep = webhook_endpoints
ev = webhook_events
dl = webhook_deliveries

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"


# ---------------------------------------------------------------- endpoints


def endpoints_for(conn: Connection, tenant_id: str) -> list[Any]:
    """The enabled endpoints that receive this tenant's events: its own and the global ones."""
    return list(
        conn.execute(
            select(ep.c.tenant_id, ep.c.id, ep.c.events).where(
                ep.c.tenant_id.in_([tenant_id, SYSTEM_TENANT]), ep.c.enabled.is_(True)
            )
        )
    )


def insert_endpoint(conn: Connection, **values: Any) -> None:
    conn.execute(insert(ep).values(**values))


def endpoint(conn: Connection, scope: str, endpoint_id: str) -> Any:
    return conn.execute(select(ep).where(ep.c.tenant_id == scope, ep.c.id == endpoint_id)).first()


def endpoints_page(conn: Connection, scope: str, after: tuple[Any, ...] | None, limit: int) -> list[Any]:
    stmt = select(ep).where(ep.c.tenant_id == scope).order_by(ep.c.created_at, ep.c.id).limit(limit)
    if after is not None:
        stmt = stmt.where(tuple_(ep.c.created_at, ep.c.id) > tuple_(*after))
    return list(conn.execute(stmt))


def update_endpoint(conn: Connection, scope: str, endpoint_id: str, **values: Any) -> None:
    conn.execute(update(ep).where(ep.c.tenant_id == scope, ep.c.id == endpoint_id).values(**values))


def delete_endpoint(conn: Connection, scope: str, endpoint_id: str) -> None:
    conn.execute(delete(dl).where(dl.c.endpoint_tenant_id == scope, dl.c.endpoint_id == endpoint_id))
    conn.execute(delete(ep).where(ep.c.tenant_id == scope, ep.c.id == endpoint_id))


def give_up_pending(conn: Connection, scope: str, endpoint_id: str, now: datetime, reason: str) -> int:
    return (
        conn.execute(
            update(dl)
            .where(dl.c.endpoint_tenant_id == scope, dl.c.endpoint_id == endpoint_id, dl.c.state == PENDING)
            .values(
                state=FAILED,
                next_attempt_at=None,
                lease_until=None,
                lease_token=None,
                last_error=reason,
                completed_at=now,
            )
        ).rowcount
        or 0
    )


# ---------------------------------------------------------------- the outbox


def insert_event(conn: Connection, **values: Any) -> None:
    conn.execute(insert(ev).values(**values))


EVENT_COLUMNS = [
    "tenant_id", "id", "type", "occurred_at", "origin", "plan_id", "subject_id", "subject_name", "cause",
    "data",
]  # fmt: skip


def insert_events_from(conn: Connection, rows: Select[Any]) -> int:
    """Set-based: `rows` yields EVENT_COLUMNS in order."""
    return conn.execute(insert(ev).from_select(EVENT_COLUMNS, rows)).rowcount or 0


def insert_deliveries_of_origin(
    conn: Connection, tenant_id: str, origin: str, endpoints: Sequence[tuple[str, str]]
) -> None:
    """One pending delivery per event of `origin` and endpoint, due at once."""
    for endpoint_tenant, endpoint_id in endpoints:
        rows = select(
            literal(tenant_id),
            new_uuid(),
            ev.c.id,
            literal(endpoint_tenant),
            literal(endpoint_id),
            literal(PENDING),
            literal(0),
            ev.c.occurred_at,
            ev.c.occurred_at,
        ).where(ev.c.tenant_id == tenant_id, ev.c.origin == origin)
        conn.execute(
            insert(dl).from_select(
                [
                    "tenant_id",
                    "id",
                    "event_id",
                    "endpoint_tenant_id",
                    "endpoint_id",
                    "state",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                ],
                rows,
            )
        )


def event(conn: Connection, tenant_id: str, event_id: str) -> Any:
    return conn.execute(select(ev).where(ev.c.tenant_id == tenant_id, ev.c.id == event_id)).first()


# ---------------------------------------------------------------- deliveries


def _with_event() -> Any:
    return select(dl, ev.c.type.label("event_type")).join(
        ev, and_(ev.c.tenant_id == dl.c.tenant_id, ev.c.id == dl.c.event_id)
    )


def deliveries_page(
    conn: Connection,
    scope: str,
    endpoint_id: str,
    *,
    state: str | None,
    after: tuple[Any, ...] | None,
    limit: int,
) -> list[Any]:
    """Deliveries of an endpoint, newest first."""
    conds = [dl.c.endpoint_id == endpoint_id, dl.c.endpoint_tenant_id == scope]
    if scope != SYSTEM_TENANT:
        conds.append(dl.c.tenant_id == scope)
    if state is not None:
        conds.append(dl.c.state == state)
    if after is not None:
        conds.append(tuple_(dl.c.created_at, dl.c.id) < tuple_(*after))
    stmt = _with_event().where(*conds).order_by(dl.c.created_at.desc(), dl.c.id.desc()).limit(limit)
    return list(conn.execute(stmt))


def delivery(conn: Connection, scope: str, endpoint_id: str, delivery_id: str) -> Any:
    conds = [dl.c.id == delivery_id, dl.c.endpoint_id == endpoint_id, dl.c.endpoint_tenant_id == scope]
    if scope != SYSTEM_TENANT:
        conds.append(dl.c.tenant_id == scope)
    return conn.execute(_with_event().where(*conds)).first()


def requeue(conn: Connection, tenant_id: str, delivery_id: str, now: datetime) -> None:
    """Due again at once with a fresh budget of attempts; an attempt in flight no longer counts."""
    conn.execute(
        update(dl)
        .where(dl.c.tenant_id == tenant_id, dl.c.id == delivery_id)
        .values(
            state=PENDING,
            attempts=0,
            next_attempt_at=now,
            lease_until=None,
            lease_token=None,
            completed_at=None,
        )
    )


def claim_due(conn: Connection, now: datetime, lease_until: datetime, token: str, batch: int) -> list[Any]:
    """Lease up to `batch` due deliveries (pending, due, and not leased by a live worker)."""
    stmt = (
        select(dl.c.tenant_id, dl.c.id)
        .where(
            dl.c.state == PENDING,
            dl.c.next_attempt_at <= now,
            or_(dl.c.lease_until.is_(None), dl.c.lease_until < now),
        )
        .order_by(dl.c.next_attempt_at)
        .limit(batch)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    keys = conn.execute(stmt).all()
    for tenant_id, delivery_id in keys:
        conn.execute(
            update(dl)
            .where(dl.c.tenant_id == tenant_id, dl.c.id == delivery_id)
            .values(lease_until=lease_until, lease_token=token)
        )
    return list(keys)


def leased(conn: Connection, tenant_id: str, delivery_id: str) -> Any:
    """A leased delivery with its event and endpoint (read after the claim committed)."""
    row = conn.execute(select(dl).where(dl.c.tenant_id == tenant_id, dl.c.id == delivery_id)).first()
    if row is None:
        return None, None, None
    return row, event(conn, tenant_id, row.event_id), endpoint(conn, row.endpoint_tenant_id, row.endpoint_id)


def record_attempt(conn: Connection, tenant_id: str, delivery_id: str, token: str, **values: Any) -> bool:
    """Write an attempt's outcome, unless the lease was lost meanwhile (answers whether it was written)."""
    n = conn.execute(
        update(dl)
        .where(dl.c.tenant_id == tenant_id, dl.c.id == delivery_id, dl.c.lease_token == token)
        .values(lease_until=None, lease_token=None, **values)
    ).rowcount
    return bool(n)


def prune(conn: Connection, before: datetime) -> tuple[int, int]:
    """Forget finished deliveries completed before `before`, then events older than it that no delivery
    refers to any more (pending deliveries are kept, however old). Answers (deliveries, events)."""
    deliveries = conn.execute(
        delete(dl).where(dl.c.state.in_([SUCCEEDED, FAILED]), dl.c.completed_at < before)
    ).rowcount
    events = conn.execute(
        delete(ev).where(
            ev.c.occurred_at < before,
            ~exists().where(dl.c.tenant_id == ev.c.tenant_id, dl.c.event_id == ev.c.id),
        )
    ).rowcount
    return deliveries or 0, events or 0
