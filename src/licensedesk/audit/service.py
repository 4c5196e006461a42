"""The append-only audit log: record events inside the caller's transaction; query and export them."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from licensedesk.audit import repository
from licensedesk.context import Context
from licensedesk.db import changes
from licensedesk.pagination import Page, check_limit, decode_cursor, encode_cursor
from licensedesk.webhooks import outbox

# Changes that cannot change any run-time check's answer (a new user holds no license), so they do not
# bump the tenant's change counter: every writer of a tenant takes that row's lock, and a directory sync
# creating thousands of users would queue on it for nothing.
NO_CHECK_EFFECT = frozenset({"user.created"})


@dataclass(frozen=True)
class Target:
    type: str
    id: str | None
    name: str | None = None


@dataclass
class AuditEvent:
    id: str
    at: datetime
    actor: dict[str, Any]
    action: str
    target: dict[str, Any] | None
    plan_id: str | None
    details: dict[str, Any]
    request_id: str | None


def record(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    action: str,
    target: Target | None,
    *,
    plan_id: str | None = None,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> str:
    if action not in NO_CHECK_EFFECT:
        changes.bump(conn, tenant_id)
    at = at or ctx.clock.now()
    target_row = (target.type, target.id, target.name) if target else (None, None, None)
    event_id = repository.insert_event(
        conn,
        tenant_id,
        at=at,
        actor=(ctx.actor.type, ctx.actor.id, ctx.actor.name),
        action=action,
        target=target_row,
        plan_id=plan_id,
        details=details,
        request_id=ctx.request_id,
    )
    # the webhooks' outbox, in this same transaction
    outbox.audited(conn, tenant_id, action, target_row, plan_id, details, at)
    return event_id


def record_many(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    events: list[tuple[str, Target, dict[str, Any] | None]],
    *,
    at: datetime | None = None,
) -> None:
    """Record many events (action, target, details) of one actor at once (bulk imports)."""
    if not events:
        return
    if any(action not in NO_CHECK_EFFECT for action, _t, _d in events):
        changes.bump(conn, tenant_id)
    when = at or ctx.clock.now()
    actor = (ctx.actor.type, ctx.actor.id, ctx.actor.name)
    repository.insert_events(
        conn,
        tenant_id,
        [
            {
                "at": when,
                "actor": actor,
                "action": action,
                "target": (target.type, target.id, target.name),
                "details": details,
                "request_id": ctx.request_id,
            }
            for action, target, details in events
        ],
    )


def record_rows(conn: Connection, tenant_id: str, rows: Any) -> int:
    """Record many events at once from a SELECT that yields audit_events' columns in table order
    (seat changes of a group fan-out are audited set-based, one event per user)."""
    changes.bump(conn, tenant_id)
    n = repository.insert_from_select(conn, rows)
    if n:
        outbox.license_rows(conn, tenant_id, rows)  # the webhooks' outbox, in this same transaction
    return n


def _event(row: Any) -> AuditEvent:
    return AuditEvent(
        id=row.id,
        at=row.at,
        actor={"type": row.actor_type, "id": row.actor_id, "name": row.actor_name},
        action=row.action,
        target=(
            {"type": row.target_type, "id": row.target_id, "name": row.target_name}
            if row.target_type
            else None
        ),
        plan_id=row.plan_id,
        details=json.loads(row.details) if row.details else {},
        request_id=row.request_id,
    )


def query(
    ctx: Context,
    tenant_id: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    actor_id: str | None = None,
    target_id: str | None = None,
    plan_id: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Page[AuditEvent]:
    """Audit events, newest first."""
    limit = check_limit(limit)
    after = decode_cursor(cursor, ("time", "str"))
    with ctx.db.read() as conn:
        rows = repository.query(
            conn,
            tenant_id,
            since=since,
            until=until,
            action=action,
            actor_id=actor_id,
            target_id=target_id,
            plan_id=plan_id,
            after=after,
            limit=limit + 1,
        )
    items = [_event(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].at.isoformat(), items[-1].id) if len(rows) > limit else None
    return Page(items, nxt)


CSV_COLUMNS = [
    "id", "at", "actorType", "actorId", "actorName", "action",
    "targetType", "targetId", "targetName", "planId", "details", "requestId",
]  # fmt: skip


def export_csv(ctx: Context, tenant_id: str, **filters: Any) -> Iterator[str]:
    """The filtered audit log as CSV lines, newest first, streamed page by page."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    yield buf.getvalue()
    cursor = None
    while True:
        page = query(ctx, tenant_id, cursor=cursor, limit=1000, **filters)
        buf.seek(0)
        buf.truncate()
        for e in page.items:
            target = e.target or {}
            writer.writerow(
                [
                    e.id,
                    e.at.isoformat() + "Z",
                    e.actor["type"],
                    e.actor["id"] or "",
                    e.actor["name"] or "",
                    e.action,
                    target.get("type") or "",
                    target.get("id") or "",
                    target.get("name") or "",
                    e.plan_id or "",
                    json.dumps(e.details, separators=(",", ":")) if e.details else "",
                    e.request_id or "",
                ]
            )
        yield buf.getvalue()
        if page.next_cursor is None:
            return
        cursor = page.next_cursor
