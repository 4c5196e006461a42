from __future__ import annotations

from typing import Literal

from pydantic import Field

from licensedesk.api.schemas import ApiModel, Out, UtcDateTime
from licensedesk.webhooks.events import SELECTORS

EventSelector = Literal[SELECTORS]  # type: ignore[valid-type]


class EndpointCreate(ApiModel):
    url: str = Field(max_length=2000, description="where events are POSTed: an http(s) URL")
    events: list[EventSelector] = Field(
        default=["*"],
        min_length=1,
        max_length=50,
        description='event types to receive: "license.changed", "subscription.*", one subscription type, '
        'or "*" (everything)',
    )
    description: str = Field(default="", max_length=500)
    enabled: bool = True


class EndpointUpdate(ApiModel):
    url: str | None = Field(default=None, max_length=2000)
    events: list[EventSelector] | None = Field(default=None, min_length=1, max_length=50)
    description: str | None = Field(default=None, max_length=500)
    enabled: bool | None = None


class EndpointOut(Out):
    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    scope: Literal["tenant", "global"]
    created_at: UtcDateTime
    updated_at: UtcDateTime


class EndpointCreated(EndpointOut):
    secret: str = Field(
        description='the signing secret (HMAC-SHA256 over "<t>.<raw body>"); shown this once, never again'
    )


class DeliveryOut(Out):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    tenant_id: str
    state: Literal["pending", "succeeded", "failed"]
    attempts: int
    next_attempt_at: UtcDateTime | None
    last_attempt_at: UtcDateTime | None
    last_response_code: int | None
    last_error: str | None
    created_at: UtcDateTime
    completed_at: UtcDateTime | None
