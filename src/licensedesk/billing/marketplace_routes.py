"""POST /v1/marketplace/events: purchases from the marketplace, authenticated by their signature."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from pydantic import Field, ValidationError

from licensedesk.api.schemas import ApiModel, InstantIn, Out, problems
from licensedesk.billing import marketplace
from licensedesk.errors import DomainError, ValidationFailed

router = APIRouter(tags=["marketplace"])


class BeneficiaryIn(ApiModel):
    tenant_id: str = Field(max_length=200, description="the buyer's identity provider tenant id")
    email_id: str = Field(max_length=320, description="the buyer's e-mail (userPrincipalName)")
    object_id: str | None = Field(default=None, max_length=200, description="the buyer's object id")


class MarketplaceEventIn(ApiModel):
    id: str = Field(min_length=1, max_length=200)
    subscription_id: str = Field(min_length=1, max_length=200)
    plan_id: str | None = Field(default=None, max_length=63)
    quantity: int | None = Field(default=None, ge=1, le=10_000_000)
    action: Literal[
        "Subscribe", "ChangeQuantity", "ChangePlan", "Suspend", "Reinstate", "Renew", "Unsubscribe"
    ]
    time_stamp: InstantIn
    beneficiary: BeneficiaryIn


class EventOut(Out):
    id: str
    outcome: Literal["applied", "duplicate", "stale"]
    tenant_id: str | None
    subscription_id: str | None


class _Malformed(DomainError):
    code = "invalid_request"
    status = 400
    title = "Malformed request"


@router.post(
    "/v1/marketplace/events",
    response_model=EventOut,
    responses=problems(409),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": MarketplaceEventIn.model_json_schema(
                        by_alias=True, ref_template="#/components/schemas/{model}"
                    )
                }
            },
        }
    },
)
async def marketplace_event(
    request: Request,
    signature: Annotated[str | None, Header(alias="X-Marketplace-Signature", max_length=200)] = None,
) -> Any:
    """A purchase event, signed with the shared secret: `X-Marketplace-Signature: t=<unix time>,v1=<hex
    HMAC-SHA256 of "<t>.<raw body>">`. Idempotent by `id`; a stale event (older than the last applied to its
    subscription) is recorded and ignored."""
    body = await request.body()
    ctx = request.app.state.ctx
    marketplace.verify(request.app.state.settings.marketplace_secret, signature, body)
    try:
        parsed = MarketplaceEventIn.model_validate(json.loads(body))
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            raise ValidationFailed(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from exc
        raise _Malformed("the body is not JSON") from exc
    event = marketplace.Event(
        id=parsed.id,
        subscription_id=parsed.subscription_id,
        plan_id=parsed.plan_id,
        quantity=parsed.quantity,
        action=parsed.action,
        time_stamp=parsed.time_stamp,
        beneficiary=marketplace.Beneficiary(
            parsed.beneficiary.tenant_id, parsed.beneficiary.email_id, parsed.beneficiary.object_id
        ),
    )
    from starlette.concurrency import run_in_threadpool

    from licensedesk.api.middleware import request_id_var

    result = await run_in_threadpool(
        marketplace.handle, ctx.as_actor(ctx.actor, request_id_var.get()), event, body.decode("utf-8")
    )
    return result
