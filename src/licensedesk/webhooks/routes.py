"""Webhook endpoints and their delivery logs: a tenant's (global_admin writes, readers read; secrets are
shown only in the answer that creates or rotates them) and the global ones (the operator's)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic.alias_generators import to_camel

from licensedesk.api.deps import Caller, caller
from licensedesk.api.idempotency import IdempotentRoute
from licensedesk.api.schemas import Page, page, problems
from licensedesk.errors import ValidationFailed
from licensedesk.webhooks import service
from licensedesk.webhooks.schemas import (
    DeliveryOut,
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointUpdate,
)

EndpointId = Annotated[str, Path(max_length=36)]
DeliveryId = Annotated[str, Path(max_length=36)]
Cursor = Annotated[str | None, Query(max_length=500)]
Limit = Annotated[int | None, Query(ge=1, le=1000)]


def _created(endpoint: service.Endpoint, secret: str) -> dict[str, Any]:
    return {**EndpointOut.model_validate(endpoint).model_dump(by_alias=True), "secret": secret}


def _mount(router: APIRouter, read: Any, write: Any) -> None:
    """The same routes for a tenant's endpoints and for the global ones; `call.tenant_id` is None for
    the latter."""

    @router.get("/webhooks", response_model=Page[EndpointOut], responses=problems())
    def list_endpoints(call: Caller = read, cursor: Cursor = None, limit: Limit = None) -> object:
        result = service.list_endpoints(call.ctx, call.tenant_id, cursor=cursor, limit=limit)
        return page(result.items, result.next_cursor)

    @router.post("/webhooks", status_code=201, response_model=EndpointCreated, responses=problems(409))
    def create_endpoint(body: EndpointCreate, call: Caller = write) -> object:
        endpoint, secret = service.create_endpoint(
            call.ctx,
            call.tenant_id,
            body.url,
            event_types=list(body.events),
            description=body.description,
            enabled=body.enabled,
        )
        return _created(endpoint, secret)

    @router.get("/webhooks/{id}", response_model=EndpointOut, responses=problems())
    def get_endpoint(id: EndpointId, call: Caller = read) -> object:
        return service.get_endpoint(call.ctx, call.tenant_id, id)

    @router.patch("/webhooks/{id}", response_model=EndpointOut, responses=problems())
    def update_endpoint(id: EndpointId, body: EndpointUpdate, call: Caller = write) -> object:
        changes: dict[str, Any] = body.model_dump(exclude_unset=True)
        for name, value in changes.items():
            if value is None:
                raise ValidationFailed(f"{to_camel(name)} cannot be null", field=to_camel(name))
        return service.update_endpoint(call.ctx, call.tenant_id, id, **changes)

    @router.delete("/webhooks/{id}", status_code=204, responses=problems())
    def delete_endpoint(id: EndpointId, call: Caller = write) -> Response:
        service.delete_endpoint(call.ctx, call.tenant_id, id)
        return Response(status_code=204)

    @router.post("/webhooks/{id}/rotate-secret", response_model=EndpointCreated, responses=problems(409))
    def rotate_secret(id: EndpointId, call: Caller = write) -> object:
        endpoint, secret = service.rotate_secret(call.ctx, call.tenant_id, id)
        return _created(endpoint, secret)

    @router.get("/webhooks/{id}/deliveries", response_model=Page[DeliveryOut], responses=problems())
    def list_deliveries(
        id: EndpointId,
        call: Caller = read,
        state: Annotated[str | None, Query(max_length=16)] = None,
        cursor: Cursor = None,
        limit: Limit = None,
    ) -> object:
        result = service.list_deliveries(
            call.ctx, call.tenant_id, id, state=state, cursor=cursor, limit=limit
        )
        return page(result.items, result.next_cursor)

    @router.post(
        "/webhooks/{id}/deliveries/{delivery_id}/redeliver",
        status_code=202,
        response_model=DeliveryOut,
        responses=problems(409),
    )
    def redeliver(id: EndpointId, delivery_id: DeliveryId, call: Caller = write) -> object:
        return service.redeliver(call.ctx, call.tenant_id, id, delivery_id)


router = APIRouter(prefix="/v1/tenants/{t}", tags=["webhooks"], route_class=IdempotentRoute)
_mount(router, caller("webhooks.read"), caller("webhooks.write"))

global_router = APIRouter(prefix="/v1", tags=["webhooks"], route_class=IdempotentRoute)
_mount(global_router, caller("webhooks.global", tenant=False), caller("webhooks.global", tenant=False))
