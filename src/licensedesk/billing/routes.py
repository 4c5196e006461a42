"""Subscriptions (purchases): billing admins and global admins of the tenant, and the operator."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic.alias_generators import to_camel

from licensedesk.api.deps import Caller, caller
from licensedesk.api.idempotency import IdempotentRoute
from licensedesk.api.schemas import Page, page, problems
from licensedesk.billing import service
from licensedesk.billing.schemas import SubscriptionCreate, SubscriptionOut, SubscriptionUpdate
from licensedesk.errors import ValidationFailed

router = APIRouter(prefix="/v1/tenants/{t}", tags=["subscriptions"], route_class=IdempotentRoute)
SubscriptionId = Annotated[str, Path(max_length=36)]


@router.get("/subscriptions", response_model=Page[SubscriptionOut], responses=problems())
def list_subscriptions(
    call: Caller = caller("subscriptions.read"),
    plan_id: Annotated[str | None, Query(alias="planId", max_length=63)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> object:
    result = service.list_subscriptions(call.ctx, call.tenant, plan_id=plan_id, cursor=cursor, limit=limit)
    return page(result.items, result.next_cursor)


@router.post("/subscriptions", status_code=201, response_model=SubscriptionOut, responses=problems(409))
def create_subscription(body: SubscriptionCreate, call: Caller = caller("subscriptions.write")) -> object:
    return service.create_subscription(
        call.ctx,
        call.tenant,
        body.plan_id,
        body.quantity,
        status=body.status,
        trial=body.trial,
        term_ends_at=body.term_ends_at,
        auto_renew=body.auto_renew,
    )


@router.get("/subscriptions/{id}", response_model=SubscriptionOut, responses=problems())
def get_subscription(id: SubscriptionId, call: Caller = caller("subscriptions.read")) -> object:
    return service.get_subscription(call.ctx, call.tenant, id)


@router.patch("/subscriptions/{id}", response_model=SubscriptionOut, responses=problems(409))
def update_subscription(
    id: SubscriptionId,
    body: SubscriptionUpdate,
    call: Caller = caller("subscriptions.write"),
) -> object:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    for name in ("quantity", "status", "auto_renew"):
        if name in changes and changes[name] is None:
            raise ValidationFailed(f"{to_camel(name)} cannot be null", field=to_camel(name))
    force = changes.pop("force", False)
    return service.update_subscription(call.ctx, call.tenant, id, force=force, **changes)
