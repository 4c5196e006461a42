"""Purchases from the marketplace (SPEC section 5): signed events that create tenants and subscriptions,
change quantities and plans, suspend, reinstate, renew and cancel.

The signature is `X-Marketplace-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` with the
shared secret; a missing or wrong signature, or a `t` more than 5 minutes from now, is refused before
anything is read. Events are idempotent by `id`; per subscription, an event older than the last one
applied is recorded and ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from licensedesk.audit import service as audit
from licensedesk.billing import repository
from licensedesk.billing import service as billing
from licensedesk.context import Actor, Context
from licensedesk.db.schema import SYSTEM_TENANT, marketplace_events, subscriptions
from licensedesk.directory import repository as directory_repo
from licensedesk.directory import service as directory
from licensedesk.errors import DomainError, NotFound, ValidationFailed
from licensedesk.licensing import service as licensing
from licensedesk.tenancy import repository as tenancy_repo
from licensedesk.tenancy import service as tenancy

TOLERANCE_SECONDS = 300
ACTIONS = ("Subscribe", "ChangeQuantity", "ChangePlan", "Suspend", "Reinstate", "Renew", "Unsubscribe")
MARKETPLACE = Actor("marketplace", "marketplace", "marketplace")
_SIGNATURE = re.compile(r"^t=(\d{1,12}),v1=([0-9a-f]{64})$")


class BadSignature(DomainError):
    code = "invalid_signature"
    status = 401
    title = "Invalid signature"


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    """The X-Marketplace-Signature header of a body (for the marketplace's side, tests and the CLI)."""
    t = int(time.time()) if at is None else at
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(secret: str, header: str | None, body: bytes, now: float | None = None) -> None:
    if not secret:
        raise BadSignature("marketplace events are not accepted: no shared secret is configured")
    match = _SIGNATURE.match((header or "").strip())
    if match is None:
        raise BadSignature("X-Marketplace-Signature is missing or malformed (t=<unix time>,v1=<hex>)")
    t = int(match.group(1))
    if abs((time.time() if now is None else now) - t) > TOLERANCE_SECONDS:
        raise BadSignature("the signature's time is more than 5 minutes away from now")
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, match.group(2)):
        raise BadSignature("the signature does not match the body")


@dataclass
class Beneficiary:
    tenant_id: str
    email_id: str
    object_id: str | None


@dataclass
class Event:
    id: str
    subscription_id: str
    plan_id: str | None
    quantity: int | None
    action: str
    time_stamp: datetime
    beneficiary: Beneficiary


@dataclass
class EventResult:
    id: str
    outcome: str  # applied | duplicate | stale
    tenant_id: str | None
    subscription_id: str | None


def _tenant_slug(conn: Connection, email: str) -> str:
    domain = email.rsplit("@", 1)[-1].lower()
    base = re.sub(r"[^a-z0-9]+", "-", domain).strip("-")[:55] or "tenant"
    slug, n = base, 1
    while tenancy_repo.by_slug(conn, slug) is not None:
        n += 1
        slug = f"{base}-{n}"
    return slug


def handle(ctx: Context, event: Event, body: str) -> EventResult:
    """Apply one verified event, in one transaction with its record."""
    if event.action not in ACTIONS:
        raise ValidationFailed(f"action must be one of {', '.join(ACTIONS)}", field="action")
    ctx = ctx.as_actor(MARKETPLACE, ctx.request_id)
    with ctx.db.write() as conn:
        seen = conn.execute(
            select(marketplace_events.c.id, marketplace_events.c.tenant_id).where(
                marketplace_events.c.id == event.id
            )
        ).first()
        if seen is not None:
            return EventResult(event.id, "duplicate", seen.tenant_id, None)
        tenant_row = tenancy_repo.by_external_id(conn, event.beneficiary.tenant_id)
        if tenant_row is None and event.action != "Subscribe":
            raise NotFound("tenant of beneficiary", event.beneficiary.tenant_id)
        sub = repository.by_external_id(conn, tenant_row.id, event.subscription_id) if tenant_row else None
        if sub is None and event.action != "Subscribe":
            raise NotFound("subscription", event.subscription_id)
        if sub is not None and sub.last_event_at is not None and event.time_stamp < sub.last_event_at:
            _record(conn, ctx, tenant_row.id, event, body, "stale", "older than the last event applied")
            return EventResult(event.id, "stale", tenant_row.id, sub.id)
        if tenant_row is None:
            tenant = tenancy.create_tenant_in(
                conn,
                ctx,
                _tenant_slug(conn, event.beneficiary.email_id),
                event.beneficiary.email_id.rsplit("@", 1)[-1],
                external_tenant_id=event.beneficiary.tenant_id,
            )
            tenant_id = tenant.id
        else:
            tenant_id = tenant_row.id
        sub_id = _apply(conn, ctx, tenant_id, sub, event)
        conn.execute(
            update(subscriptions)
            .where(subscriptions.c.tenant_id == tenant_id, subscriptions.c.id == sub_id)
            .values(last_event_at=event.time_stamp)
        )
        _record(conn, ctx, tenant_id, event, body, "applied", None)
        return EventResult(event.id, "applied", tenant_id, sub_id)


def _apply(conn: Connection, ctx: Context, tenant_id: str, sub: Any, event: Event) -> str:
    action = event.action
    if action == "Subscribe":
        if event.plan_id is None or event.quantity is None:
            raise ValidationFailed("Subscribe needs planId and quantity", field="planId")
        if sub is None:
            sub = billing.create_subscription_in(
                conn,
                ctx,
                tenant_id,
                event.plan_id,
                event.quantity,
                source="marketplace",
                external_id=event.subscription_id,
                auto_renew=True,
            )
        elif sub.quantity != event.quantity:
            sub = billing.update_subscription_in(
                conn, ctx, tenant_id, sub, quantity=event.quantity, force=True
            )
        _license_buyer(conn, ctx, tenant_id, sub.plan_id, event.beneficiary)
        return str(sub.id)
    if action == "ChangeQuantity":
        if event.quantity is None:
            raise ValidationFailed("ChangeQuantity needs quantity", field="quantity")
        billing.update_subscription_in(conn, ctx, tenant_id, sub, quantity=event.quantity, force=True)
    elif action == "ChangePlan":
        if event.plan_id is None:
            raise ValidationFailed("ChangePlan needs planId", field="planId")
        billing.change_plan_in(conn, ctx, tenant_id, sub, event.plan_id)
    elif action == "Suspend":
        billing.update_subscription_in(conn, ctx, tenant_id, sub, status="Suspended", force=True)
    elif action == "Reinstate":
        billing.update_subscription_in(conn, ctx, tenant_id, sub, status="Active", force=True)
    elif action == "Renew":
        billing.renew_in(conn, ctx, tenant_id, sub)
    elif action == "Unsubscribe":
        billing.update_subscription_in(conn, ctx, tenant_id, sub, status="Cancelled", force=True)
    return str(sub.id)


def _license_buyer(conn: Connection, ctx: Context, tenant_id: str, plan_id: str, buyer: Beneficiary) -> None:
    """The purchaser becomes a user (if not one already) and gets one of the seats directly."""
    user = directory_repo.user_by_external_id(conn, tenant_id, buyer.object_id) if buyer.object_id else None
    user = user or directory_repo.user_by_upn(conn, tenant_id, buyer.email_id)
    if user is None:
        user = directory.create_user_in(
            conn, ctx, tenant_id, buyer.email_id, buyer.email_id.split("@", 1)[0], external_id=buyer.object_id
        )
    licensing.assign_in(conn, ctx, tenant_id, plan_id, users=[user.id], allow_partial=True)


def _record(
    conn: Connection, ctx: Context, tenant_id: str, event: Event, body: str, outcome: str, detail: str | None
) -> None:
    conn.execute(
        insert(marketplace_events).values(
            tenant_id=tenant_id or SYSTEM_TENANT,
            id=event.id,
            subscription_external_id=event.subscription_id,
            action=event.action,
            time_stamp=event.time_stamp,
            received_at=ctx.clock.now(),
            outcome=outcome,
            detail=detail,
            body=body,
        )
    )
    audit.record(
        conn,
        ctx,
        tenant_id,
        f"marketplace.{event.action[0].lower()}{event.action[1:]}",
        audit.Target("subscription", event.subscription_id, event.plan_id),
        plan_id=event.plan_id,
        details={"eventId": event.id, "outcome": outcome, "quantity": event.quantity},
    )


def naive_utc(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def test_event(
    action: str,
    subscription_id: str,
    *,
    plan_id: str | None,
    quantity: int | None,
    tenant_id: str,
    email: str,
    object_id: str | None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An event body as the marketplace would send it (for `licensedesk marketplace send`)."""
    import uuid

    return {
        "id": event_id or str(uuid.uuid4()),
        "subscriptionId": subscription_id,
        "planId": plan_id,
        "quantity": quantity,
        "action": action,
        "timeStamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "beneficiary": {"tenantId": tenant_id, "emailId": email, "objectId": object_id},
    }
