"""SCIM 2.0 at /scim/v2/{t}/ (SPEC section 4), served by scim2-server over the directory.

Only API tokens with the role `scim` of the tenant may call it; every refusal, authentication included, is
a SCIM error document (RFC 7644 section 3.12) rather than a problem document.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from scim2_models import ForbiddenException, NotFoundException, SCIMException, UnauthorizedException
from scim2_server.handler import ScimHandler
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from starlette.concurrency import run_in_threadpool

from licensedesk.api.deps import acting, app_context, authenticate
from licensedesk.api.problems import ApiError
from licensedesk.auth.roles import Principal
from licensedesk.context import Actor, Context
from licensedesk.errors import DomainError
from licensedesk.scim.provider import scim_service
from licensedesk.scim.storage import DirectoryStorage
from licensedesk.tenancy import service as tenancy

router = APIRouter(tags=["scim"])
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _caller(request: Request, t: str) -> tuple[Context, str]:
    """The scim token's context and tenant id: 401 without a valid token, 404 for a tenant the token does
    not belong to (never 403, so that nobody learns it exists), 403 for any role but scim."""
    try:
        principal: Principal = authenticate(request)
    except ApiError as exc:
        raise UnauthorizedException(detail=exc.detail) from exc
    ctx = app_context(request)
    tenant_id = _tenant_id(request, ctx, t)
    if tenant_id is None or not principal.sees_tenant(tenant_id):
        raise NotFoundException(detail=f"tenant {t} was not found")
    if not principal.may("scim"):
        raise ForbiddenException(detail="only a token with the role scim may use the SCIM endpoint")
    base = acting(ctx, principal)
    return base.as_actor(
        Actor("scim", principal.token_id or principal.id, principal.name), base.request_id
    ), tenant_id


def _tenant_id(request: Request, ctx: Context, ref: str) -> str | None:
    """The id of the tenant a SCIM URL names (by id or slug). Both are immutable and tenants are never
    deleted, so the app remembers them: an identity provider's every request names the same tenant."""
    known: dict[str, str] | None = getattr(request.app.state, "scim_tenants", None)
    if known is None:
        known = request.app.state.scim_tenants = {}
    found = known.get(ref)
    if found is None:
        try:
            found = tenancy.get_tenant(ctx, ref).id
        except DomainError:
            return None
        if len(known) < 100_000:
            known[ref] = found
    return found


def _serve(ctx: Context, tenant_id: str, request: ScimRequest) -> ScimResponse:
    service = scim_service()
    storage = DirectoryStorage(ctx, tenant_id, service.get_model, write=request.method.upper() != "GET")
    return ScimHandler(service, storage).handle(request)


def _response(answer: ScimResponse) -> Response:
    body = b"" if answer.body is None else json.dumps(answer.body).encode()
    headers = {k: v for k, v in answer.headers.items() if k.lower() != "content-type"}
    headers.setdefault("Cache-Control", "no-cache")
    return Response(
        body, status_code=int(answer.status), headers=headers, media_type=answer.headers.get("Content-Type")
    )


async def _scim(request: Request, t: str, path: str) -> Response:
    base_url = str(request.base_url).rstrip("/") + f"/scim/v2/{t}"
    scim_request = ScimRequest(
        method=request.method,
        base_url=base_url,
        path="/" + path.strip("/"),
        query=dict(request.query_params),
        headers=list(request.headers.items()),
        body=await request.body(),
    )
    return _response(await run_in_threadpool(_answer, request, t, scim_request))


def _answer(request: Request, t: str, scim_request: ScimRequest) -> ScimResponse:
    """Authenticate and serve, in one worker thread (both read the database)."""
    try:
        ctx, tenant_id = _caller(request, t)
        return _serve(ctx, tenant_id, scim_request)
    except SCIMException as exc:
        return scim_service().error_response(exc)


@router.api_route("/scim/v2/{t}/{path:path}", methods=METHODS, include_in_schema=False)
async def scim(request: Request, t: str, path: str) -> Any:
    """SCIM 2.0 (RFC 7644): Users, Groups, ServiceProviderConfig, Schemas, ResourceTypes."""
    return await _scim(request, t, path)
