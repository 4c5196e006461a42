"""The catalog: the operator writes, every admin reads."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from licensedesk.api.deps import Caller, caller
from licensedesk.api.idempotency import IdempotentRoute
from licensedesk.api.schemas import Page, page, problems
from licensedesk.catalog import service
from licensedesk.catalog.schemas import PlanCreate, PlanOut, ProductCreate, ProductOut

router = APIRouter(prefix="/v1", tags=["catalog"], route_class=IdempotentRoute)


@router.get("/products", response_model=Page[ProductOut], responses=problems())
def list_products(call: Caller = caller("catalog.read", tenant=False)) -> object:
    return page(service.list_products(call.ctx), None)


@router.post("/products", status_code=201, response_model=ProductOut, responses=problems(409))
def create_product(body: ProductCreate, call: Caller = caller("catalog.write", tenant=False)) -> object:
    return service.create_product(call.ctx, body.id, body.name, body.audience)


@router.post("/products/{p}/plans", status_code=201, response_model=PlanOut, responses=problems(409))
def create_plan(
    body: PlanCreate,
    p: Annotated[str, Path(max_length=63)],
    call: Caller = caller("catalog.write", tenant=False),
) -> object:
    return service.create_plan(
        call.ctx,
        p,
        body.id,
        body.name,
        body.sp_identifier,
        trial_days=body.trial_days,
        grace_days=body.grace_days,
        suspension_days=body.suspension_days,
    )


@router.get("/plans", response_model=Page[PlanOut], responses=problems())
def list_plans(
    call: Caller = caller("catalog.read", tenant=False),
    product_id: Annotated[str | None, Query(alias="productId", max_length=63)] = None,
) -> object:
    return page(service.list_plans(call.ctx, product_id), None)
