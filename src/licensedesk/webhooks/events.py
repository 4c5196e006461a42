"""The events webhooks carry, which endpoint wants which, and the body of each (built from its outbox
row, so every attempt of a delivery sends the same bytes)."""

from __future__ import annotations

import json
from typing import Any

LICENSE_CHANGED = "license.changed"
# the audit actions of a user's license changing state (licensing/repository.py seat_change_events)
LICENSE_ACTIONS = (
    "license.granted",
    "license.revoked",
    "license.seat_lost",
    "license.seated",
    "license.state_changed",
)
SUBSCRIPTION_TYPES = (
    "subscription.created",
    "subscription.quantity_changed",
    "subscription.status_changed",
    "subscription.cancelled",
    "subscription.plan_changed",
    "subscription.updated",
    "subscription.renewed",
    "subscription.trial_converted",
    "subscription.trial_expired",
    "subscription.term_ended",
    "subscription.suspended",
    "subscription.expired",
)
TYPES = (LICENSE_CHANGED, *SUBSCRIPTION_TYPES)
# what an endpoint may subscribe to: a type, every subscription.* type, or everything
SELECTORS = ("*", "subscription.*", *TYPES)


def wants(selectors: list[str], event_type: str) -> bool:
    for s in selectors:
        if s == "*" or s == event_type or (s.endswith(".*") and event_type.startswith(s[:-1])):
            return True
    return False


def subscription_event_type(action: str, details: dict[str, Any] | None) -> str | None:
    """The webhook type of an audited subscription change (None: not one webhooks carry)."""
    if action == "subscription.status_changed" and (details or {}).get("to") == "Cancelled":
        return "subscription.cancelled"
    return action if action in SUBSCRIPTION_TYPES else None


def _utc(value: Any) -> str:
    return value.isoformat(timespec="microseconds") + "Z"


def body(event: Any) -> bytes:
    """The JSON body of an event row of webhook_events."""
    if event.type == LICENSE_CHANGED:
        change = json.loads(event.data) if event.data else {}
        data: dict[str, Any] = {
            "user": {"id": event.subject_id, "userPrincipalName": event.subject_name},
            "planId": event.plan_id,
            "oldState": change.get("from"),
            "newState": change.get("to"),
            "reason": event.cause,
        }
    else:
        data = json.loads(event.data) if event.data else {}
    payload = {
        "id": event.id,
        "type": event.type,
        "createdAt": _utc(event.occurred_at),
        "tenantId": event.tenant_id,
        "data": data,
    }
    return json.dumps(payload, separators=(",", ":"), default=str).encode()
