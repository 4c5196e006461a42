"""The transactional outbox: webhook events are written by the very transaction that makes the change
(the audit module calls in here), so a rolled-back or refused change sends nothing and a committed one
is never lost. A tenant without endpoints pays one indexed look-up per audited change set, nothing per
row: the events and deliveries are only written when an endpoint wants them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, literal, select

from licensedesk.db.engine import after_commit
from licensedesk.db.functions import new_uuid
from licensedesk.db.schema import SYSTEM_TENANT
from licensedesk.webhooks import events
from licensedesk.webhooks import repository as repo

_listeners: list[Callable[[], None]] = []


def on_events_queued(listener: Callable[[], None]) -> None:
    """Register a callable run after a transaction that queued deliveries commits (the dispatcher)."""
    _listeners.append(listener)


def off_events_queued(listener: Callable[[], None]) -> None:
    """Forget a listener registered with on_events_queued (a stopped dispatcher)."""
    if listener in _listeners:
        _listeners.remove(listener)


def queued(conn: Connection) -> None:
    for listener in list(_listeners):
        after_commit(conn, listener)


def _wanting(conn: Connection, tenant_id: str, event_type: str) -> list[tuple[str, str]]:
    return [
        (r.tenant_id, r.id)
        for r in repo.endpoints_for(conn, tenant_id)
        if events.wants(json.loads(r.events), event_type)
    ]


def license_rows(conn: Connection, tenant_id: str, rows: Select[Any]) -> None:
    """`license.changed` for each seat change among audit rows being recorded set-based (`rows` yields
    audit_events' columns in table order)."""
    if tenant_id == SYSTEM_TENANT:
        return
    endpoints = _wanting(conn, tenant_id, events.LICENSE_CHANGED)
    if not endpoints:
        return
    origin = str(uuid.uuid4())
    c = list(rows.subquery().c)
    # audit_events: tenant_id, id, at, actor_type, actor_id, actor_name, action, target_type, target_id,
    # target_name, plan_id, details, request_id
    at, action, user_id, upn, plan_id, details = c[2], c[6], c[8], c[9], c[10], c[11]
    select_events = select(
        literal(tenant_id),
        new_uuid(),
        literal(events.LICENSE_CHANGED),
        at,
        literal(origin),
        plan_id,
        user_id,
        upn,
        action,
        details,
    ).where(action.in_(events.LICENSE_ACTIONS))
    if repo.insert_events_from(conn, select_events):
        repo.insert_deliveries_of_origin(conn, tenant_id, origin, endpoints)
        queued(conn)


def audited(
    conn: Connection,
    tenant_id: str,
    action: str,
    target: tuple[str | None, str | None, str | None],
    plan_id: str | None,
    details: dict[str, Any] | None,
    at: datetime,
) -> None:
    """`subscription.*` for an audited subscription change (other actions carry no webhook)."""
    if tenant_id == SYSTEM_TENANT or not action.startswith("subscription."):
        return
    event_type = events.subscription_event_type(action, details)
    if event_type is None:
        return
    endpoints = _wanting(conn, tenant_id, event_type)
    if not endpoints:
        return
    from licensedesk.billing import service as billing  # billing records audit events: import late

    subscription = billing.subscription_snapshot(conn, tenant_id, target[1] or "")
    origin = str(uuid.uuid4())
    repo.insert_event(
        conn,
        tenant_id=tenant_id,
        id=str(uuid.uuid4()),
        type=event_type,
        occurred_at=at,
        origin=origin,
        plan_id=plan_id,
        subject_id=target[1],
        subject_name=target[2],
        cause=action,
        data=json.dumps(
            {"subscription": subscription, "changes": details or {}}, separators=(",", ":"), default=str
        ),
    )
    repo.insert_deliveries_of_origin(conn, tenant_id, origin, endpoints)
    queued(conn)
