"""Tenants: the operator creates and lists them; a tenant's own admins read and update theirs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from licensedesk.api.deps import Caller, caller
from licensedesk.api.idempotency import IdempotentRoute
from licensedesk.api.schemas import Page, page, problems
from licensedesk.pagination import Page as ResultPage
from licensedesk.tenancy import service
from licensedesk.tenancy.schemas import TenantCreate, TenantOut, TenantUpdate

router = APIRouter(prefix="/v1", tags=["tenants"], route_class=IdempotentRoute)


@router.post("/tenants", status_code=201, response_model=TenantOut, responses=problems(409))
def create_tenant(body: TenantCreate, call: Caller = caller("tenants.manage", tenant=False)) -> object:
    return service.create_tenant(
        call.ctx,
        body.slug,
        body.name,
        external_tenant_id=body.external_tenant_id,
        issuer=body.issuer,
        jwks_uri=body.jwks_uri,
    )


@router.get("/tenants", response_model=Page[TenantOut], responses=problems())
def list_tenants(
    call: Caller = caller("tenant.read", tenant=False),
    external_tenant_id: Annotated[str | None, Query(alias="externalTenantId", max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> object:
    """All tenants (operator); a tenant's admins see only theirs. `?externalTenantId=` finds one."""
    if external_tenant_id is not None:
        found = service.find_by_external_id(call.ctx, external_tenant_id)
        visible = [found] if found and call.principal.sees_tenant(found.id) else []
        return page(visible, None)
    if not call.principal.is_operator:
        assert call.principal.tenant_id is not None
        return page([service.get_tenant(call.ctx, call.principal.tenant_id)], None)
    result: ResultPage[service.Tenant] = service.list_tenants(call.ctx, cursor=cursor, limit=limit)
    return page(result.items, result.next_cursor)


@router.get("/tenants/{t}", response_model=TenantOut, responses=problems())
def get_tenant(call: Caller = caller("tenant.read")) -> object:
    return service.get_tenant(call.ctx, call.tenant)


@router.patch("/tenants/{t}", response_model=TenantOut, responses=problems(409))
def update_tenant(body: TenantUpdate, call: Caller = caller("tenant.write")) -> object:
    return service.update_tenant(call.ctx, call.tenant, **body.model_dump(exclude_unset=True))
