"""A tenant's API tokens. The secret is shown once, in the answer to POST."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from licensedesk.api.deps import Caller, caller
from licensedesk.api.idempotency import IdempotentRoute
from licensedesk.api.problems import ApiError
from licensedesk.api.schemas import Page, page, problems
from licensedesk.auth import service
from licensedesk.auth.roles import grantable_by
from licensedesk.auth.schemas import TokenCreate, TokenCreated, TokenOut

router = APIRouter(prefix="/v1/tenants/{t}", tags=["tokens"], route_class=IdempotentRoute)


@router.get("/tokens", response_model=Page[TokenOut], responses=problems())
def list_tokens(
    call: Caller = caller("tokens.manage"),
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> object:
    result = service.list_tokens(call.ctx, call.tenant, cursor=cursor, limit=limit)
    return page(result.items, result.next_cursor)


@router.post("/tokens", status_code=201, response_model=TokenCreated, responses=problems(409))
def create_token(body: TokenCreate, call: Caller = caller("tokens.manage")) -> object:
    if body.role not in grantable_by(call.principal):
        raise ApiError(403, "forbidden", f"your role may not create {body.role} tokens")
    token, secret = service.create_token(call.ctx, body.role, tenant_ref=call.tenant, name=body.name or None)
    return {**TokenOut.model_validate(token).model_dump(by_alias=True), "secret": secret}


@router.delete("/tokens/{id}", status_code=204, responses=problems())
def revoke_token(id: Annotated[str, Path(max_length=36)], call: Caller = caller("tokens.manage")) -> Response:
    service.revoke_token(call.ctx, call.tenant, id)
    return Response(status_code=204)
