"""Subscriptions (purchases) and their lifecycle. Every change recomputes the plan's pool and lets the
seating rule move seats, in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from licensedesk import fields
from licensedesk.audit import service as audit
from licensedesk.billing import repository
from licensedesk.catalog import service as catalog
from licensedesk.context import SYSTEM, Context
from licensedesk.errors import NotFound, SubscriptionTerminal, ValidationFailed
from licensedesk.licensing import seating
from licensedesk.licensing import service as licensing
from licensedesk.pagination import Page, check_limit, decode_cursor, encode_cursor
from licensedesk.settings import get_settings
from licensedesk.tenancy import service as tenancy

UNSET: Any = object()
MAX_QUANTITY = 10_000_000
DEFAULT_TERM = timedelta(days=365)


@dataclass
class Subscription:
    id: str
    plan_id: str
    quantity: int
    status: str
    trial: bool
    trial_ends_at: datetime | None
    term_ends_at: datetime | None
    auto_renew: bool
    source: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime


def _subscription(row: Any) -> Subscription:
    return Subscription(
        row.id,
        row.plan_id,
        row.quantity,
        row.status,
        bool(row.trial),
        row.trial_ends_at,
        row.term_ends_at,
        bool(row.auto_renew),
        row.source,
        row.external_id,
        row.created_at,
        row.updated_at,
    )


def _quantity(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_QUANTITY:
        raise ValidationFailed(f"quantity must be a whole number from 1 to {MAX_QUANTITY}", field="quantity")
    return value


def _status(value: Any) -> str:
    if value not in seating.SUBSCRIPTION_STATUSES:
        raise ValidationFailed(
            f"status must be one of {', '.join(seating.SUBSCRIPTION_STATUSES)}", field="status"
        )
    return str(value)


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed(f"{field} must be true or false", field=field)
    return value


def _recompute_pool(conn: Connection, ctx: Context, tenant_id: str, plan_id: str, *, force: bool) -> None:
    rows = repository.plan_subscriptions(conn, tenant_id, plan_id)
    units = seating.pool_units((r.status, r.quantity) for r in rows)
    licensing.pool_units_changed(
        conn, ctx, tenant_id, plan_id, units, has_subscriptions=bool(rows), force=force
    )


def create_subscription(
    ctx: Context,
    tenant_ref: str,
    plan_id: str,
    quantity: int,
    *,
    status: str = "Active",
    trial: bool = False,
    term_ends_at: datetime | None = None,
    auto_renew: bool = False,
    source: str = "api",
    external_id: str | None = None,
) -> Subscription:
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        return _subscription(
            create_subscription_in(
                conn,
                ctx,
                t,
                plan_id,
                quantity,
                status=status,
                trial=trial,
                term_ends_at=term_ends_at,
                auto_renew=auto_renew,
                source=source,
                external_id=external_id,
            )
        )


def create_subscription_in(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    plan_id: str,
    quantity: int,
    *,
    status: str = "Active",
    trial: bool = False,
    term_ends_at: datetime | None = None,
    auto_renew: bool = False,
    source: str = "api",
    external_id: str | None = None,
) -> Any:
    plan = catalog.plan_in(conn, plan_id)
    quantity = _quantity(quantity)
    status = _status(status)
    if status in seating.TERMINAL_STATUSES:
        raise ValidationFailed("a new subscription cannot start Expired or Cancelled", field="status")
    trial = _bool(trial, "trial")
    auto_renew = _bool(auto_renew, "autoRenew")
    if source not in ("api", "marketplace"):
        raise ValidationFailed("source must be api or marketplace", field="source")
    external_id = fields.optional_text(external_id, "externalId", max_length=200)
    now = ctx.clock.now()
    if trial and plan.trial_days <= 0:
        raise ValidationFailed(f"plan {plan.id} has no trial", field="trial")
    if term_ends_at is not None and term_ends_at <= now:
        raise ValidationFailed("termEndsAt must be in the future", field="termEndsAt")
    if external_id and repository.by_external_id(conn, tenant_id, external_id) is not None:
        from licensedesk.errors import Duplicate

        raise Duplicate("subscription", "externalId", external_id)
    licensing.lock_pool(conn, ctx, tenant_id, plan.id)
    sub_id = str(uuid.uuid4())
    repository.insert_subscription(
        conn,
        tenant_id=tenant_id,
        id=sub_id,
        plan_id=plan.id,
        quantity=quantity,
        status=status,
        trial=trial,
        trial_ends_at=now + timedelta(days=plan.trial_days) if trial else None,
        term_started_at=now,
        term_ends_at=term_ends_at,
        auto_renew=auto_renew,
        source=source,
        external_id=external_id,
        status_changed_at=now,
        created_at=now,
        updated_at=now,
    )
    audit.record(
        conn,
        ctx,
        tenant_id,
        "subscription.created",
        audit.Target("subscription", sub_id, plan.name),
        plan_id=plan.id,
        details={"quantity": quantity, "status": status, "trial": trial, "source": source},
        at=now,
    )
    _recompute_pool(conn, ctx, tenant_id, plan.id, force=False)
    return repository.subscription(conn, tenant_id, sub_id)


def update_subscription(
    ctx: Context,
    tenant_ref: str,
    subscription_id: str,
    *,
    quantity: int = UNSET,
    status: str = UNSET,
    auto_renew: bool = UNSET,
    term_ends_at: datetime | None = UNSET,
    force: bool = False,
) -> Subscription:
    """Change quantity, status, renewal or term. Fewer seats than assigned is refused unless forced."""
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        row = _resolve(conn, t, subscription_id)
        return _subscription(
            update_subscription_in(
                conn,
                ctx,
                t,
                row,
                quantity=quantity,
                status=status,
                auto_renew=auto_renew,
                term_ends_at=term_ends_at,
                force=force,
            )
        )


def _resolve(conn: Connection, tenant_id: str, subscription_id: str) -> Any:
    row = repository.subscription(conn, tenant_id, subscription_id)
    if row is None:
        raise NotFound("subscription", subscription_id)
    return row


def update_subscription_in(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    row: Any,
    *,
    quantity: int = UNSET,
    status: str = UNSET,
    auto_renew: bool = UNSET,
    term_ends_at: datetime | None = UNSET,
    trial: bool = UNSET,
    term_started_at: datetime = UNSET,
    force: bool = False,
    action: str | None = None,
    status_changed_at: datetime | None = None,
) -> Any:
    force = _bool(force, "force")
    if row.status in seating.TERMINAL_STATUSES:
        raise SubscriptionTerminal(row.status)
    now = ctx.clock.now()
    values: dict[str, Any] = {}
    if quantity is not UNSET:
        values["quantity"] = _quantity(quantity)
    if status is not UNSET:
        values["status"] = _status(status)
    if auto_renew is not UNSET:
        values["auto_renew"] = _bool(auto_renew, "autoRenew")
    if term_ends_at is not UNSET:
        values["term_ends_at"] = term_ends_at
    if trial is not UNSET:
        values["trial"] = trial
    if term_started_at is not UNSET:
        values["term_started_at"] = term_started_at
    changed = {k: v for k, v in values.items() if getattr(row, k) != v}
    if not changed:
        return row
    licensing.lock_pool(conn, ctx, tenant_id, row.plan_id)
    if "status" in changed:
        changed["status_changed_at"] = status_changed_at or now
    repository.update_subscription(conn, tenant_id, row.id, updated_at=now, **changed)
    target = audit.Target("subscription", row.id, row.plan_id)
    if "quantity" in changed:
        audit.record(
            conn,
            ctx,
            tenant_id,
            "subscription.quantity_changed",
            target,
            plan_id=row.plan_id,
            at=now,
            details={"from": row.quantity, "to": changed["quantity"], "force": force},
        )
    if "status" in changed:
        audit.record(
            conn,
            ctx,
            tenant_id,
            action or "subscription.status_changed",
            target,
            plan_id=row.plan_id,
            at=now,
            details={"from": row.status, "to": changed["status"], "force": force},
        )
    other = {k: v for k, v in changed.items() if k not in ("quantity", "status", "status_changed_at")}
    if other:
        audit.record(
            conn,
            ctx,
            tenant_id,
            action if action and "status" not in changed else "subscription.updated",
            target,
            plan_id=row.plan_id,
            at=now,
            details={_CAMEL.get(k, k): v for k, v in other.items()},
        )
    if "quantity" in changed or "status" in changed:
        _recompute_pool(conn, ctx, tenant_id, row.plan_id, force=force)
    return repository.subscription(conn, tenant_id, row.id)


_CAMEL = {
    "auto_renew": "autoRenew",
    "term_ends_at": "termEndsAt",
    "trial": "trial",
    "term_started_at": "termStartedAt",
}


def subscription_snapshot(conn: Connection, tenant_id: str, subscription_id: str) -> dict[str, Any] | None:
    """A subscription as outgoing webhooks carry it (camelCase, UTC times)."""
    row = repository.subscription(conn, tenant_id, subscription_id)
    if row is None:
        return None
    s = _subscription(row)

    def utc(value: datetime | None) -> str | None:
        return value.isoformat(timespec="microseconds") + "Z" if value is not None else None

    return {
        "id": s.id,
        "planId": s.plan_id,
        "quantity": s.quantity,
        "status": s.status,
        "trial": s.trial,
        "trialEndsAt": utc(s.trial_ends_at),
        "termEndsAt": utc(s.term_ends_at),
        "autoRenew": s.auto_renew,
        "source": s.source,
        "externalId": s.external_id,
        "createdAt": utc(s.created_at),
    }


def get_subscription(ctx: Context, tenant_ref: str, subscription_id: str) -> Subscription:
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        return _subscription(_resolve(conn, t, subscription_id))


def list_subscriptions(
    ctx: Context,
    tenant_ref: str,
    *,
    plan_id: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Page[Subscription]:
    limit = check_limit(limit)
    after = decode_cursor(cursor, ("time", "str"))
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        rows = repository.page(conn, t, after, limit + 1, plan_id)
    items = [_subscription(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at.isoformat(), items[-1].id) if len(rows) > limit else None
    return Page(items, nxt)


def change_plan_in(conn: Connection, ctx: Context, tenant_id: str, row: Any, new_plan_id: str) -> Any:
    """Move a subscription to another plan of the same product. Its assignments move with it (keeping
    their claim order) when no other live subscription is left on the old plan."""
    if row.status in seating.TERMINAL_STATUSES:
        raise SubscriptionTerminal(row.status)
    old = catalog.plan_in(conn, row.plan_id)
    new = catalog.plan_in(conn, new_plan_id)
    if new.id == old.id:
        return row
    if new.product_id != old.product_id:
        raise ValidationFailed("a subscription can only change to a plan of the same product", field="planId")
    for plan_id in sorted((old.id, new.id)):
        licensing.lock_pool(conn, ctx, tenant_id, plan_id)
    now = ctx.clock.now()
    repository.update_subscription(conn, tenant_id, row.id, plan_id=new.id, updated_at=now)
    audit.record(
        conn,
        ctx,
        tenant_id,
        "subscription.plan_changed",
        audit.Target("subscription", row.id, new.name),
        plan_id=new.id,
        at=now,
        details={"from": old.id, "to": new.id},
    )
    _recompute_pool(conn, ctx, tenant_id, new.id, force=True)
    others = [
        r
        for r in repository.plan_subscriptions(conn, tenant_id, old.id)
        if r.status not in seating.TERMINAL_STATUSES
    ]
    if not others:
        licensing.move_plan_in(conn, ctx, tenant_id, old.id, new.id)
    _recompute_pool(conn, ctx, tenant_id, old.id, force=True)
    return repository.subscription(conn, tenant_id, row.id)


def renew_in(conn: Connection, ctx: Context, tenant_id: str, row: Any) -> Any:
    """Extend the term by its length (a year when unknown); a subscription in grace is Active again."""
    if row.status in seating.TERMINAL_STATUSES:
        raise SubscriptionTerminal(row.status)
    now = ctx.clock.now()
    if row.term_ends_at is not None:
        length = row.term_ends_at - row.term_started_at if row.term_started_at else DEFAULT_TERM
        length = length if length > timedelta(0) else DEFAULT_TERM
        start = max(row.term_ends_at, now)
        row = update_subscription_in(
            conn,
            ctx,
            tenant_id,
            row,
            term_started_at=start,
            term_ends_at=start + length,
            force=True,
            action="subscription.renewed",
        )
    else:
        audit.record(
            conn,
            ctx,
            tenant_id,
            "subscription.renewed",
            audit.Target("subscription", row.id, row.plan_id),
            plan_id=row.plan_id,
            at=now,
        )
    if row.status == "Warning":
        row = update_subscription_in(conn, ctx, tenant_id, row, status="Active", force=True)
    return row


# ---------------------------------------------------------------- lifecycle (a worker duty)


def _periods(plan: catalog.Plan) -> tuple[timedelta, timedelta]:
    settings = get_settings()
    grace = plan.grace_days if plan.grace_days is not None else settings.grace_days
    suspension = plan.suspension_days if plan.suspension_days is not None else settings.suspension_days
    return timedelta(days=grace), timedelta(days=suspension)


def advance_lifecycle(ctx: Context) -> int:
    """Move every subscription on that time has moved on (SPEC section 1): an ended term without renewal
    -> Warning for graceDays -> Suspended for suspensionDays -> Expired; an ended trial converts to paid
    (autoRenew) or expires; autoRenew extends an ended term. Each step is its own audited transaction,
    forced (the seating rule demotes the most recently licensed). Answers how many steps were taken."""
    ctx = ctx.as_actor(SYSTEM)
    steps = 0
    while True:
        now = ctx.clock.now()
        with ctx.db.read() as conn:
            candidates = repository.lifecycle_candidates(conn, now)
        moved = 0
        for tenant_id, sub_id in candidates:
            with ctx.db.write() as conn:
                row = repository.subscription(conn, tenant_id, sub_id)
                if row is not None and _advance_one(conn, ctx, tenant_id, row, now):
                    moved += 1
        steps += moved
        if moved == 0:
            return steps


def _advance_one(conn: Connection, ctx: Context, tenant_id: str, row: Any, now: datetime) -> bool:
    plan = catalog.plan_in(conn, row.plan_id)
    grace, suspension = _periods(plan)
    if row.status == "Active" and row.trial and row.trial_ends_at is not None and row.trial_ends_at <= now:
        if row.auto_renew:
            term = (
                row.term_ends_at
                if row.term_ends_at and row.term_ends_at > row.trial_ends_at
                else (row.trial_ends_at + DEFAULT_TERM)
            )
            update_subscription_in(
                conn,
                ctx,
                tenant_id,
                row,
                trial=False,
                term_started_at=row.trial_ends_at,
                term_ends_at=term,
                force=True,
                action="subscription.trial_converted",
            )
        else:
            update_subscription_in(
                conn,
                ctx,
                tenant_id,
                row,
                status="Expired",
                force=True,
                action="subscription.trial_expired",
                status_changed_at=row.trial_ends_at,
            )
        return True
    if row.status == "Active" and row.term_ends_at is not None and row.term_ends_at <= now:
        if row.auto_renew:
            length = row.term_ends_at - row.term_started_at if row.term_started_at else DEFAULT_TERM
            length = length if length > timedelta(0) else DEFAULT_TERM
            start, end = row.term_ends_at, row.term_ends_at + length
            while end <= now:
                start, end = end, end + length
            update_subscription_in(
                conn,
                ctx,
                tenant_id,
                row,
                term_started_at=start,
                term_ends_at=end,
                force=True,
                action="subscription.renewed",
            )
        else:
            update_subscription_in(
                conn,
                ctx,
                tenant_id,
                row,
                status="Warning",
                force=True,
                action="subscription.term_ended",
                status_changed_at=row.term_ends_at,
            )
        return True
    if row.status == "Warning" and row.status_changed_at + grace <= now:
        update_subscription_in(
            conn,
            ctx,
            tenant_id,
            row,
            status="Suspended",
            force=True,
            action="subscription.suspended",
            status_changed_at=row.status_changed_at + grace,
        )
        return True
    if row.status == "Suspended" and row.status_changed_at + suspension <= now:
        update_subscription_in(
            conn,
            ctx,
            tenant_id,
            row,
            status="Expired",
            force=True,
            action="subscription.expired",
            status_changed_at=row.status_changed_at + suspension,
        )
        return True
    return False
