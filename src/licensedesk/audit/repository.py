"""Queries of the audit log. Every query takes tenant_id first."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, func, insert, literal, or_, select, tuple_

from licensedesk.db.schema import audit_events as ae


def insert_event(
    conn: Connection,
    tenant_id: str,
    *,
    at: datetime,
    actor: tuple[str, str | None, str | None],
    action: str,
    target: tuple[str | None, str | None, str | None],
    plan_id: str | None,
    details: dict[str, Any] | None,
    request_id: str | None,
) -> str:
    event_id = str(uuid.uuid4())
    conn.execute(
        _INSERT_EVENT,  # one statement object: SQLAlchemy compiles it once (every change is audited)
        {
            "tenant_id": tenant_id,
            "id": event_id,
            "at": at,
            "actor_type": actor[0],
            "actor_id": actor[1],
            "actor_name": actor[2],
            "action": action,
            "target_type": target[0],
            "target_id": target[1],
            "target_name": target[2],
            "plan_id": plan_id,
            "details": json.dumps(details, separators=(",", ":"), default=str) if details else None,
            "request_id": request_id,
        },
    )
    return event_id


_INSERT_EVENT = insert(ae)


def insert_events(conn: Connection, tenant_id: str, events: list[dict[str, Any]]) -> None:
    """Many events in one statement; each dict has the keyword arguments of insert_event."""
    rows = [
        {
            "tenant_id": tenant_id,
            "id": str(uuid.uuid4()),
            "at": e["at"],
            "actor_type": e["actor"][0],
            "actor_id": e["actor"][1],
            "actor_name": e["actor"][2],
            "action": e["action"],
            "target_type": e["target"][0],
            "target_id": e["target"][1],
            "target_name": e["target"][2],
            "plan_id": e.get("plan_id"),
            "details": json.dumps(e["details"], separators=(",", ":"), default=str)
            if e.get("details")
            else None,
            "request_id": e.get("request_id"),
        }
        for e in events
    ]
    if rows:
        conn.execute(insert(ae), rows)


def insert_from_select(conn: Connection, rows: Select[Any]) -> int:
    """Set-based insert; `rows` yields the columns of audit_events in table order."""
    result = conn.execute(insert(ae).from_select([c.name for c in ae.columns], rows))
    return result.rowcount or 0


def query(
    conn: Connection,
    tenant_id: str,
    *,
    since: datetime | None,
    until: datetime | None,
    action: str | None,
    actor_id: str | None,
    target_id: str | None,
    plan_id: str | None,
    after: tuple[datetime, str] | None,
    limit: int | None,
) -> list[Any]:
    conds = [ae.c.tenant_id == tenant_id]
    if since is not None:
        conds.append(ae.c.at >= since)
    if until is not None:
        conds.append(ae.c.at < until)
    if action:
        # "license.*" style prefixes are handy in the portal's filter
        if action.endswith("*"):
            conds.append(ae.c.action.startswith(action[:-1], autoescape=True))
        else:
            conds.append(ae.c.action == action)
    if actor_id:
        conds.append(ae.c.actor_id == actor_id)
    if target_id:
        conds.append(or_(ae.c.target_id == target_id))
    if plan_id:
        conds.append(ae.c.plan_id == plan_id)
    if after is not None:
        conds.append(tuple_(ae.c.at, ae.c.id) < tuple_(after[0], after[1]))
    stmt = select(ae).where(and_(*conds)).order_by(ae.c.at.desc(), ae.c.id.desc())
    if conn.dialect.name == "sqlite":
        index = _filter_index(conn, conds, target_id, actor_id, plan_id, action)
        if index is not None:
            stmt = stmt.with_hint(ae, f"INDEXED BY {index}", "sqlite")
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(conn.execute(stmt))


RARE = 20_000  # at most this many matching events: sorting them is quicker than walking the log for them


def _filter_index(
    conn: Connection,
    conds: list[Any],
    target_id: str | None,
    actor_id: str | None,
    plan_id: str | None,
    action: str | None,
) -> str | None:
    """The index SQLite should read a filtered page from, where its planner, without statistics of how
    rare a value is, would walk the whole log by time (the ORDER BY's index) filtering as it goes: seconds
    at a million events for a rare action or actor. A target's index ends in the log's order (at, id), so
    it always serves. The actor, action and plan indexes end in `at` only (a fan-out writes thousands of
    events of one action at one time: ordered by id too, their inserts would land all over the index): a
    page from them sorts every match tied on time, so they serve only a value with few events, which a
    bounded count finds out (a common one is met at once walking by time)."""
    if target_id:
        return "ix_audit_events_target"
    if actor_id:
        index = "ix_audit_events_actor"
    elif plan_id:
        index = "ix_audit_events_plan"
    elif action and not action.endswith("*"):
        index = "ix_audit_events_action"
    else:
        return None
    probe = select(literal(1)).select_from(ae).where(and_(*conds)).limit(RARE + 1)
    probe = probe.with_hint(ae, f"INDEXED BY {index}", "sqlite")
    matches = conn.execute(select(func.count()).select_from(probe.subquery())).scalar_one()
    return index if matches <= RARE else None
