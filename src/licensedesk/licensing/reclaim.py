"""Reclaiming idle seats (SPEC section 1, Usage): a per-tenant policy, off by default, that removes DIRECT
assignments whose seat has not been used for more than `idleDays` days. A never-used seat counts from its
claim, or from the license's last change when later (a user seated after waiting is not idle at once).
Licenses held through groups are never touched: a user who holds the plan directly and through a group
loses only the direct assignment and keeps the seat through the group.

The dry run lists what a run would reclaim now. A run removes the assignments as `unassign` does (the
seating rule then gives the freed seats to waiting users, in claim order), each audited as
`license.reclaimed` by the system. The worker runs the enabled policies; an admin may also run one now.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from licensedesk.audit import service as audit
from licensedesk.context import SYSTEM, Context
from licensedesk.errors import ValidationFailed
from licensedesk.licensing import reclaim_queries as queries
from licensedesk.licensing import repository as repo
from licensedesk.licensing import service as licensing
from licensedesk.pagination import Page, check_limit, decode_cursor, encode_cursor
from licensedesk.tenancy import service as tenancy

DEFAULT_IDLE_DAYS = 90
MAX_IDLE_DAYS = 36500
CHUNK = 1000  # assignments removed per transaction


@dataclass
class Policy:
    enabled: bool
    idle_days: int
    updated_at: datetime | None = None
    last_run_at: datetime | None = None


@dataclass
class Candidate:
    user: dict[str, str]
    plan_id: str
    state: str
    claimed_at: datetime
    last_used_at: datetime | None
    idle_since: datetime
    also_through_groups: bool


@dataclass
class RunResult:
    idle_days: int
    reclaimed: int
    items: list[Candidate] = field(default_factory=list)  # the first CHUNK of them


def _policy(row: Any) -> Policy:
    if row is None:
        return Policy(False, DEFAULT_IDLE_DAYS)
    return Policy(bool(row.enabled), row.idle_days, row.updated_at, row.last_run_at)


def _candidate(r: Any) -> Candidate:
    return Candidate(
        {"id": r.user_id, "userPrincipalName": r.user_principal_name, "displayName": r.display_name},
        r.plan_id,
        r.state,
        r.claim_at,
        r.last_used_at,
        _as_datetime(r.idle_since),
        bool(r.via_group),
    )


def _as_datetime(value: Any) -> datetime:
    # SQLite answers max() of two times as text
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def check_idle_days(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_IDLE_DAYS:
        raise ValidationFailed(f"idleDays must be a whole number from 1 to {MAX_IDLE_DAYS}", field="idleDays")
    return value


def get_policy(ctx: Context, tenant_ref: str) -> Policy:
    with ctx.db.read() as conn:
        return _policy(queries.policy(conn, tenancy.resolve(conn, tenant_ref).id))


def set_policy(ctx: Context, tenant_ref: str, *, enabled: bool, idle_days: int) -> Policy:
    if not isinstance(enabled, bool):
        raise ValidationFailed("enabled must be true or false", field="enabled")
    idle_days = check_idle_days(idle_days)
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        before = _policy(queries.policy(conn, t))
        now = ctx.clock.now()
        queries.save_policy(conn, t, enabled, idle_days, now)
        audit.record(
            conn,
            ctx,
            t,
            "reclaim.policy_changed",
            audit.Target("tenant", t, None),
            details={
                "from": {"enabled": before.enabled, "idleDays": before.idle_days},
                "to": {"enabled": enabled, "idleDays": idle_days},
            },
            at=now,
        )
        return _policy(queries.policy(conn, t))


def preview(
    ctx: Context,
    tenant_ref: str,
    *,
    idle_days: int | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> tuple[int, Page[Candidate]]:
    """The dry run: the direct assignments a run would reclaim now (with the policy's idleDays unless
    given), by plan and claim order. Changes nothing."""
    limit = check_limit(limit)
    after = decode_cursor(cursor, ("str", "time", "str"))
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        days = (
            check_idle_days(idle_days)
            if idle_days is not None
            else _policy(queries.policy(conn, t)).idle_days
        )
        idle_before = ctx.clock.now() - timedelta(days=days)
        rows = queries.idle_direct(conn, t, idle_before, after=after, limit=limit + 1)
    items = [_candidate(r) for r in rows[:limit]]
    nxt = (
        encode_cursor(items[-1].plan_id, items[-1].claimed_at.isoformat(), items[-1].user["id"])
        if len(rows) > limit
        else None
    )
    return days, Page(items, nxt)


def run(ctx: Context, tenant_ref: str) -> RunResult:
    """Reclaim now, with the tenant's policy's idleDays (an explicit run works with the policy off too:
    `enabled` is whether the worker runs it by itself)."""
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        policy = _policy(queries.policy(conn, t))
        audit.record(
            conn,
            ctx,
            t,
            "reclaim.run",
            audit.Target("tenant", t, None),
            details={"idleDays": policy.idle_days},
        )
    return _reclaim(ctx, t, policy.idle_days)


def _reclaim(ctx: Context, tenant_id: str, idle_days: int) -> RunResult:
    system = ctx.as_actor(SYSTEM, ctx.request_id)
    idle_before = system.clock.now() - timedelta(days=idle_days)
    result = RunResult(idle_days, 0)
    with ctx.db.read() as conn:
        plans = queries.plans_with_idle_direct(conn, tenant_id, idle_before)
    for plan_id in plans:
        while True:
            with ctx.db.write() as conn:
                now = system.clock.now()
                repo.lock_pool(conn, tenant_id, plan_id, now)
                # read again under the pool's lock: a seat used since the dry run is not reclaimed
                rows = queries.idle_direct(conn, tenant_id, idle_before, plan_id=plan_id, limit=CHUNK)
                if not rows:
                    break
                user_ids = [r.user_id for r in rows]
                repo.delete_direct(conn, tenant_id, plan_id, user_ids)
                for r in rows:
                    audit.record(
                        conn,
                        system,
                        tenant_id,
                        "license.reclaimed",
                        audit.Target("user", r.user_id, r.user_principal_name),
                        plan_id=plan_id,
                        at=now,
                        details={
                            "idleDays": idle_days,
                            "lastUsedAt": r.last_used_at.isoformat() + "Z" if r.last_used_at else None,
                            "claimedAt": r.claim_at.isoformat() + "Z",
                            "idleSince": _as_datetime(r.idle_since).isoformat() + "Z",
                            "keptThroughGroups": bool(r.via_group),
                        },
                    )
                # the same recomputation as unassign: sources left (groups) keep the license, and the
                # seating rule hands freed seats to waiting users
                licensing.apply_to_users(conn, system, tenant_id, plan_id, user_ids, now)
            result.reclaimed += len(rows)
            room = CHUNK - len(result.items)
            result.items.extend(_candidate(r) for r in rows[:room])
            if len(rows) < CHUNK:
                break
    return result


def run_policies(ctx: Context) -> int:
    """The worker's round: run every enabled policy. Answers how many assignments were reclaimed."""
    with ctx.db.read() as conn:
        policies = queries.enabled_policies(conn)
    total = 0
    for p in policies:
        total += _reclaim(ctx, p.tenant_id, p.idle_days).reclaimed
        with ctx.db.write() as conn:
            queries.mark_run(conn, p.tenant_id, ctx.clock.now())
    return total
