from __future__ import annotations

from typing import Any

from licensedesk.api.schemas import Out, UtcDateTime


class ActorOut(Out):
    type: str
    id: str | None
    name: str | None


class TargetOut(Out):
    type: str
    id: str | None
    name: str | None


class AuditEventOut(Out):
    id: str
    at: UtcDateTime
    actor: ActorOut
    action: str
    target: TargetOut | None
    plan_id: str | None
    details: dict[str, Any]
    request_id: str | None
