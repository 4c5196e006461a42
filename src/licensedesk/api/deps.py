"""Typed dependencies: the caller (principal), the tenant they name, and the service Context to act with.

Order of refusals: no or bad credentials -> 401; a tenant the caller cannot see -> 404 (never 403, so
that nobody learns another tenant exists); a role without the permission -> 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request

from licensedesk.api.middleware import request_id_var
from licensedesk.api.problems import ApiError
from licensedesk.auth import oidc
from licensedesk.auth import service as auth
from licensedesk.auth.roles import SCIM, Principal
from licensedesk.context import Actor, Context
from licensedesk.errors import NotFound
from licensedesk.ratelimit import RateLimited, RateLimiter
from licensedesk.tenancy import service as tenancy

BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="licensedesk"'}


def app_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


def _unauthenticated(detail: str) -> ApiError:
    return ApiError(401, "unauthenticated", detail, headers=BEARER_CHALLENGE)


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise _unauthenticated("use Authorization: Bearer <token>")
    return value.strip()


def authenticate(request: Request) -> Principal:
    """The caller, cached on the request."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = bearer_token(request)
    if token is None:
        raise _unauthenticated("this endpoint needs a bearer token")
    ctx = app_context(request)
    # an address that keeps presenting bad tokens waits, before any more of them are looked at
    failures: RateLimiter | None = getattr(request.app.state, "auth_failures", None)
    address = request.client.host if request.client else ""
    if failures is not None and (wait := failures.blocked(address)):
        raise RateLimited(wait, "too many failed sign-ins from this address; try again later")
    principal: Principal | None
    if token.startswith(auth.PREFIX):
        feed = getattr(request.app.state, "feed", None)
        principal = auth.authenticate(ctx, token, versions=feed.version if feed is not None else None)
    else:
        principal = _oidc_admin(request, ctx, token)
    if principal is None:
        if failures is not None:
            failures.hit(address)
        raise _unauthenticated("the token is not valid")
    scim_only = principal.roles == frozenset({SCIM})
    limiter: RateLimiter | None = getattr(
        request.app.state, "scim_limiter" if scim_only else "api_limiter", None
    )
    if limiter is not None and (wait := limiter.hit((principal.kind, principal.id))):
        raise RateLimited(wait, "too many requests with this credential; try again later")
    request.state.principal = principal
    return principal


def _oidc_admin(request: Request, ctx: Context, token: str) -> Principal | None:
    issuer = oidc.unverified_issuer(token)
    if issuer is None:
        return None
    candidates = tenancy.tenants_by_issuer(ctx, issuer)
    if len(candidates) != 1:  # issuers are unique; anything else names no tenant for sure
        return None
    for tenant in candidates:
        if not tenant.jwks_uri:
            continue
        try:
            claims = oidc.validate(
                token,
                jwks_uri=tenant.jwks_uri,
                issuer=issuer,
                audience=request.app.state.settings.api_audience,
                cache=request.app.state.jwks,
            )
        except oidc.InvalidToken:
            continue
        tid = claims.get("tid")
        if tenant.external_tenant_id and tid is not None and tid != tenant.external_tenant_id:
            return None  # a token of another directory that happens to share the issuer
        return oidc.admin_principal(claims, tenant.id)
    return None


def acting(ctx: Context, principal: Principal) -> Context:
    actor = Actor("user" if principal.kind == "user" else "token", principal.id, principal.name)
    return ctx.as_actor(actor, request_id_var.get())


@dataclass(frozen=True)
class Caller:
    principal: Principal
    ctx: Context  # acting as the caller, with the request id
    tenant_id: str | None = None  # the tenant named in the path, when there is one

    @property
    def tenant(self) -> str:
        assert self.tenant_id is not None
        return self.tenant_id


def _forbidden(permission: str) -> ApiError:
    return ApiError(403, "forbidden", f"your role does not allow this ({permission})")


def allowed(permission: str) -> Callable[..., Caller]:
    """A dependency for routes outside any tenant."""

    def dependency(request: Request) -> Caller:
        principal = authenticate(request)
        if not principal.may(permission):
            raise _forbidden(permission)
        return Caller(principal, acting(app_context(request), principal))

    return dependency


TenantRef = Annotated[str, Path(description="tenant id or slug", max_length=100)]


def tenant_allowed(permission: str) -> Callable[..., Caller]:
    """A dependency for routes under /tenants/{t}: resolves the tenant, hides foreign ones (404)."""

    def dependency(request: Request, t: TenantRef) -> Caller:
        principal = authenticate(request)
        ctx = app_context(request)
        tenant = tenancy.get_tenant(ctx, t)
        if not principal.sees_tenant(tenant.id):
            raise NotFound("tenant", t)
        if not principal.may(permission):
            raise _forbidden(permission)
        return Caller(principal, acting(ctx, principal), tenant.id)

    return dependency


def caller(permission: str, *, tenant: bool = True) -> Any:
    return Depends(tenant_allowed(permission) if tenant else allowed(permission))
