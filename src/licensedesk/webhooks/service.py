"""Webhook endpoints and their deliveries: register, change, remove an endpoint, rotate its secret, read
the delivery log, redeliver. An endpoint belongs to a tenant, or is global (the operator's: every tenant's
events), kept under SYSTEM_TENANT; `tenant_ref=None` names the global scope.

The signing secret must be usable for HMAC, so it is stored as it is (not hashed); it is answered once,
when created or rotated, never listed, never logged, never audited.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection

from licensedesk.audit import service as audit
from licensedesk.context import Context
from licensedesk.db.schema import SYSTEM_TENANT
from licensedesk.errors import Conflict, NotFound, ValidationFailed
from licensedesk.pagination import Page, check_limit, decode_cursor, encode_cursor
from licensedesk.settings import get_settings
from licensedesk.tenancy import service as tenancy
from licensedesk.webhooks import addresses, events, signing
from licensedesk.webhooks import repository as repo

MAX_URL = 2000
DELIVERY_STATES = (repo.PENDING, repo.SUCCEEDED, repo.FAILED)


class EndpointDisabled(Conflict):
    code = "endpoint_disabled"
    title = "Endpoint disabled"


@dataclass
class Endpoint:
    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    scope: str  # tenant | global
    created_at: datetime
    updated_at: datetime


@dataclass
class Delivery:
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    tenant_id: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_response_code: int | None
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None


def _endpoint(row: Any) -> Endpoint:
    return Endpoint(
        row.id,
        row.url,
        json.loads(row.events),
        row.description,
        bool(row.enabled),
        "global" if row.tenant_id == SYSTEM_TENANT else "tenant",
        row.created_at,
        row.updated_at,
    )


def _delivery(row: Any) -> Delivery:
    return Delivery(
        row.id,
        row.endpoint_id,
        row.event_id,
        row.event_type,
        row.tenant_id,
        row.state,
        row.attempts,
        row.next_attempt_at,
        row.last_attempt_at,
        row.last_response_code,
        row.last_error,
        row.created_at,
        row.completed_at,
    )


# ---------------------------------------------------------------- validation


def check_url(value: Any) -> str:
    """An absolute http(s) URL with a host, no credentials in it, no whitespace or control characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise ValidationFailed(f"url must be an http(s) URL of at most {MAX_URL} characters", field="url")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValidationFailed("url must not contain spaces or control characters", field="url")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port out of range
    except ValueError as exc:
        raise ValidationFailed(f"url is not a valid URL: {exc}", field="url") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise ValidationFailed("url must use http or https", field="url")
    if not parts.hostname:
        raise ValidationFailed("url must name a host", field="url")
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed("url must not carry credentials; the signature authenticates", field="url")
    if port == 0:
        raise ValidationFailed("url has an invalid port", field="url")
    why = None if get_settings().webhook_allow_private_addresses else addresses.refusal(parts.hostname)
    if why:
        raise ValidationFailed(
            f"url must name a public host ({why}); webhooks are sent from licensedesk's servers", field="url"
        )
    return value


def check_events(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValidationFailed("events must be a non-empty list of event types", field="events")
    out: list[str] = []
    for item in value:
        if item not in events.SELECTORS:
            raise ValidationFailed(
                f"events: unknown event type {item!r}; known: {', '.join(events.SELECTORS)}", field="events"
            )
        if item not in out:
            out.append(item)
    return out


def _description(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 500:
        raise ValidationFailed("description must be text of at most 500 characters", field="description")
    return value


# ---------------------------------------------------------------- endpoints


def _scope(conn: Connection, tenant_ref: str | None) -> str:
    return SYSTEM_TENANT if tenant_ref is None else tenancy.resolve(conn, tenant_ref).id


def _resolve(conn: Connection, scope: str, endpoint_id: str) -> Any:
    row = repo.endpoint(conn, scope, endpoint_id)
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return row


def _target(row: Any) -> audit.Target:
    return audit.Target("webhook", row.id, row.url[:320])


def create_endpoint(
    ctx: Context,
    tenant_ref: str | None,
    url: str,
    *,
    event_types: list[str] | None = None,
    description: str = "",
    enabled: bool = True,
) -> tuple[Endpoint, str]:
    """Register an endpoint. Answers it with its signing secret (shown this once)."""
    url = check_url(url)
    selectors = check_events(event_types if event_types is not None else ["*"])
    description = _description(description)
    if not isinstance(enabled, bool):
        raise ValidationFailed("enabled must be true or false", field="enabled")
    secret = signing.new_secret()
    with ctx.db.write() as conn:
        scope = _scope(conn, tenant_ref)
        now = ctx.clock.now()
        endpoint_id = str(uuid.uuid4())
        repo.insert_endpoint(
            conn,
            tenant_id=scope,
            id=endpoint_id,
            url=url,
            secret=secret,
            events=json.dumps(selectors),
            description=description,
            enabled=enabled,
            created_at=now,
            updated_at=now,
        )
        row = _resolve(conn, scope, endpoint_id)
        audit.record(
            conn,
            ctx,
            scope,
            "webhook.created",
            _target(row),
            details={"events": selectors, "enabled": enabled},
        )
        return _endpoint(row), secret


def list_endpoints(
    ctx: Context, tenant_ref: str | None, *, cursor: str | None = None, limit: int | None = None
) -> Page[Endpoint]:
    limit = check_limit(limit)
    after = decode_cursor(cursor, ("time", "str"))
    with ctx.db.read() as conn:
        rows = repo.endpoints_page(conn, _scope(conn, tenant_ref), after, limit + 1)
    items = [_endpoint(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at.isoformat(), items[-1].id) if len(rows) > limit else None
    return Page(items, nxt)


def get_endpoint(ctx: Context, tenant_ref: str | None, endpoint_id: str) -> Endpoint:
    with ctx.db.read() as conn:
        return _endpoint(_resolve(conn, _scope(conn, tenant_ref), endpoint_id))


def update_endpoint(ctx: Context, tenant_ref: str | None, endpoint_id: str, **changes: Any) -> Endpoint:
    """Change url, events, description or enabled. Disabling gives up the endpoint's pending deliveries
    (they are marked failed and can be redelivered once it is enabled again)."""
    values: dict[str, Any] = {}
    if "url" in changes:
        values["url"] = check_url(changes.pop("url"))
    if "events" in changes:
        values["events"] = json.dumps(check_events(changes.pop("events")))
    if "description" in changes:
        values["description"] = _description(changes.pop("description"))
    if "enabled" in changes:
        enabled = changes.pop("enabled")
        if not isinstance(enabled, bool):
            raise ValidationFailed("enabled must be true or false", field="enabled")
        values["enabled"] = enabled
    if changes:
        raise ValidationFailed(f"unknown fields: {', '.join(sorted(changes))}", field=sorted(changes)[0])
    with ctx.db.write() as conn:
        scope = _scope(conn, tenant_ref)
        row = _resolve(conn, scope, endpoint_id)
        changed = {k: v for k, v in values.items() if getattr(row, k) != v}
        if not changed:
            return _endpoint(row)
        now = ctx.clock.now()
        repo.update_endpoint(conn, scope, row.id, updated_at=now, **changed)
        given_up = 0
        if changed.get("enabled") is False:
            given_up = repo.give_up_pending(conn, scope, row.id, now, "endpoint disabled")
        details: dict[str, Any] = {k: v for k, v in changed.items() if k != "events"}
        if "events" in changed:
            details["events"] = json.loads(changed["events"])
        if given_up:
            details["deliveriesGivenUp"] = given_up
        row = _resolve(conn, scope, row.id)
        audit.record(conn, ctx, scope, "webhook.updated", _target(row), details=details)
        return _endpoint(row)


def delete_endpoint(ctx: Context, tenant_ref: str | None, endpoint_id: str) -> None:
    """Remove an endpoint and its delivery log; nothing more is sent to it."""
    with ctx.db.write() as conn:
        scope = _scope(conn, tenant_ref)
        row = _resolve(conn, scope, endpoint_id)
        repo.delete_endpoint(conn, scope, row.id)
        audit.record(conn, ctx, scope, "webhook.deleted", _target(row))


def rotate_secret(ctx: Context, tenant_ref: str | None, endpoint_id: str) -> tuple[Endpoint, str]:
    """A new signing secret (shown this once); the old one stops signing at once."""
    secret = signing.new_secret()
    with ctx.db.write() as conn:
        scope = _scope(conn, tenant_ref)
        row = _resolve(conn, scope, endpoint_id)
        repo.update_endpoint(conn, scope, row.id, secret=secret, updated_at=ctx.clock.now())
        audit.record(conn, ctx, scope, "webhook.secret_rotated", _target(row))
        return _endpoint(_resolve(conn, scope, row.id)), secret


# ---------------------------------------------------------------- deliveries


def list_deliveries(
    ctx: Context,
    tenant_ref: str | None,
    endpoint_id: str,
    *,
    state: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Page[Delivery]:
    """The delivery log of an endpoint, newest first."""
    limit = check_limit(limit)
    if state is not None and state not in DELIVERY_STATES:
        raise ValidationFailed(f"state must be one of {', '.join(DELIVERY_STATES)}", field="state")
    after = decode_cursor(cursor, ("time", "str"))
    with ctx.db.read() as conn:
        scope = _scope(conn, tenant_ref)
        row = _resolve(conn, scope, endpoint_id)
        rows = repo.deliveries_page(conn, scope, row.id, state=state, after=after, limit=limit + 1)
    items = [_delivery(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at.isoformat(), items[-1].id) if len(rows) > limit else None
    return Page(items, nxt)


def get_delivery(ctx: Context, tenant_ref: str | None, endpoint_id: str, delivery_id: str) -> Delivery:
    with ctx.db.read() as conn:
        scope = _scope(conn, tenant_ref)
        row = repo.delivery(conn, scope, _resolve(conn, scope, endpoint_id).id, delivery_id)
        if row is None:
            raise NotFound("webhook delivery", delivery_id)
        return _delivery(row)


def redeliver(ctx: Context, tenant_ref: str | None, endpoint_id: str, delivery_id: str) -> Delivery:
    """Send a delivery again (whatever became of it) with a fresh budget of attempts: the same event,
    the same id, so a receiver that already has it drops the copy."""
    from licensedesk.webhooks import outbox

    with ctx.db.write() as conn:
        scope = _scope(conn, tenant_ref)
        endpoint = _resolve(conn, scope, endpoint_id)
        row = repo.delivery(conn, scope, endpoint.id, delivery_id)
        if row is None:
            raise NotFound("webhook delivery", delivery_id)
        if not endpoint.enabled:
            raise EndpointDisabled("the endpoint is disabled; enable it first", endpointId=endpoint.id)
        repo.requeue(conn, row.tenant_id, row.id, ctx.clock.now())
        audit.record(
            conn,
            ctx,
            scope,
            "webhook.redelivered",
            _target(endpoint),
            details={"deliveryId": row.id, "eventId": row.event_id},
        )
        outbox.queued(conn)
        return _delivery(repo.delivery(conn, scope, endpoint.id, row.id))
