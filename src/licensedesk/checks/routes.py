"""The run-time check over HTTP (SPEC section 3).

GET servicePlans is the hot path: `CheckFastPath` answers it ahead of the framework's routing, straight
from the caches, and goes to a thread only on a cache miss. The FastAPI route below documents it (and
serves it when the fast path is not installed); both call the same Checker.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.concurrency import run_in_threadpool

from licensedesk import metrics
from licensedesk.api.deps import authenticate
from licensedesk.api.middleware import SANE_REQUEST_ID, new_request_id, request_id_var
from licensedesk.api.problems import DATABASE_UNAVAILABLE, ApiError
from licensedesk.api.schemas import ApiModel, Out, Problem, problems
from licensedesk.auth.oidc import InvalidToken
from licensedesk.checks import keys as signing
from licensedesk.checks.service import CORS_HEADERS, Answer, Checker, Lead, etag_matches
from licensedesk.errors import NotFound
from licensedesk.ratelimit import RateLimited, retry_after
from licensedesk.tenancy import service as tenancy

router = APIRouter(tags=["licensing"])
access_log = logging.getLogger("licensedesk.access")
log = logging.getLogger("licensedesk.checks")
ProductId = Annotated[str, Path(max_length=63)]
INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
SERVICE_PLANS = re.compile(r"^/v1/licensing/([a-z0-9][a-z0-9-]{0,62})/servicePlans$")
LICENSING_PATH = re.compile(r"^/v1/licensing/[a-z0-9][a-z0-9-]{0,62}/(servicePlans|license)$")
PREFLIGHT = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"GET, HEAD, OPTIONS"),
    (b"access-control-allow-headers", b"Authorization, If-None-Match, X-Request-Id"),
    (b"access-control-max-age", b"86400"),
    (b"content-length", b"0"),
)


class ServicePlan(Out):
    sp_identifier: str
    state: int = Field(
        description="ServicePlanState: 0 Inactive, 1 Active, 2 Warning, 3 Suspended, 4 Unknown"
    )


class LicenseInfoResult(Out):
    plans: list[ServicePlan]
    is_license_unsupported_env: bool
    is_license_info_available: bool


class CheckBody(ApiModel):
    tenant: str = Field(max_length=100, description="tenant id or slug")
    users: list[str] = Field(min_length=1, max_length=1000, description="userPrincipalNames or externalIds")


class CheckResult(Out):
    user: str
    plans: list[ServicePlan]


class CheckResults(Out):
    results: list[CheckResult]


Result = tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]
_TITLES = {401: "Unauthorized", 404: "Not found", 429: "Too many requests", 503: "Service unavailable"}


def _problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Result:
    body = json.dumps(
        {
            "type": f"urn:licensedesk:problem:{code}",
            "title": _TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()
    raw = {"Content-Type": "application/problem+json", "Content-Length": str(len(body)), **(headers or {})}
    return status, body, (*((k.lower().encode(), v.encode()) for k, v in raw.items()), *CORS_HEADERS)


def respond(
    checker: Checker, authorization: str | None, product_id: str, if_none_match: str | None
) -> Result:
    """(status, body, headers) of a servicePlans request. Runs the slow path; safe in a thread."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _problem(401, "invalid_token", "send the user's access token as a bearer token", INVALID_TOKEN)
    return _answering(lambda: checker.service_plans(token.strip(), product_id), if_none_match)


def respond_lead(checker: Checker, lead: Lead, if_none_match: str | None) -> Result:
    """(status, body, headers) of the request that reads a changed answer for everyone; in a thread."""
    return _answering(lambda: checker.read(lead), if_none_match)


def _answering(get: Callable[[], Answer], if_none_match: str | None) -> Result:
    try:
        answer = get()
    except InvalidToken as exc:
        return _problem(401, "invalid_token", f"the token is not valid: {exc}", INVALID_TOKEN)
    except NotFound as exc:
        return _problem(404, exc.code, exc.detail)
    except RateLimited as exc:
        return _rate_limited(exc)
    except (OperationalError, InterfaceError) as exc:
        # the database is away and the answer is not cached: "could not tell" (the JS client reports
        # isLicenseInfoAvailable: false), never a 500 and never an empty "unlicensed" answer
        log.warning("database unavailable: %s", exc.orig)
        return _problem(503, "database_unavailable", DATABASE_UNAVAILABLE, {"Retry-After": "1"})
    return _render(answer, if_none_match)


def _rate_limited(exc: RateLimited) -> Result:
    return _problem(429, "rate_limited", exc.detail, {"Retry-After": retry_after(exc.wait)})


def _render(answer: Answer, if_none_match: str | None) -> Result:
    if if_none_match is not None and etag_matches(if_none_match, answer.etag):
        return 304, b"", answer.headers_304
    return 200, answer.body, answer.headers_200


@router.get(
    "/v1/licensing/{product_id}/servicePlans",
    response_model=LicenseInfoResult,
    responses={
        **problems(),
        304: {"description": "unchanged since the ETag given in If-None-Match"},
        401: {
            "model": Problem,
            "description": 'invalid token (WWW-Authenticate: Bearer error="invalid_token")',
            "content": {"application/problem+json": {}},
        },
    },
)
async def service_plans(
    request: Request,
    product_id: ProductId,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Which plans of the product does the user of this access token hold? The exact shape of the Power BI
    visuals API's LicenseInfoResult; `state` is the numeric ServicePlanState."""
    status, body, raw = await run_in_threadpool(
        respond, request.app.state.checker, request.headers.get("authorization"), product_id, if_none_match
    )
    response = Response(body, status_code=status)
    response.raw_headers = [h for h in raw if h[0] != b"content-length"] + [
        (b"content-length", str(len(body)).encode())
    ]
    return response


@router.post("/v1/licensing/{product_id}/check", response_model=CheckResults, responses=problems(409))
def batch_check(product_id: ProductId, body: CheckBody, request: Request) -> dict[str, Any]:
    """For the vendor's servers: the plans of up to 1000 users of one tenant (operator or tenant token)."""
    principal = authenticate(request)
    checker: Checker = request.app.state.checker
    tenant = tenancy.get_tenant(checker.ctx, body.tenant)
    if not principal.sees_tenant(tenant.id):  # another tenant's: 404 before any role check
        raise NotFound("tenant", body.tenant)
    if not principal.may("licensing.check"):
        raise ApiError(403, "forbidden", "your role does not allow this (licensing.check)")
    return {"results": checker.batch(tenant.id, product_id, body.users)}


@router.get(
    "/v1/licensing/{product_id}/license",
    responses={
        **problems(),
        200: {"content": {"application/jwt": {}}, "description": "a compact JWS (EdDSA) of the answer"},
    },
)
def signed_license(product_id: ProductId, request: Request) -> Response:
    """The answer of servicePlans as a JWS signed with the service's Ed25519 key, for clients that must work
    offline for a while; verify it with /.well-known/jwks.json."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        status, body, raw = _problem(401, "invalid_token", "send the user's access token", INVALID_TOKEN)
        return _raw_response(status, body, raw)
    checker: Checker = request.app.state.checker
    try:
        jws = checker.signed_license(token.strip(), product_id)
    except InvalidToken as exc:
        return _raw_response(*_problem(401, "invalid_token", f"the token is not valid: {exc}", INVALID_TOKEN))
    except RateLimited as exc:
        return _raw_response(*_rate_limited(exc))
    return Response(
        jws,
        media_type="application/jwt",
        headers={"Cache-Control": "private, no-store", **{k.decode(): v.decode() for k, v in CORS_HEADERS}},
    )


def _raw_response(status: int, body: bytes, raw: tuple[tuple[bytes, bytes], ...]) -> Response:
    response = Response(body, status_code=status)
    response.raw_headers = list(raw)
    return response


@router.get("/.well-known/jwks.json", tags=["licensing"])
def license_keys(request: Request) -> JSONResponse:
    """Public keys that verify signed licenses (retired ones stay until their licenses expire)."""
    checker: Checker = request.app.state.checker
    return JSONResponse(
        {"keys": checker.keys.published(signing.LICENSE)}, headers={"Cache-Control": "max-age=300"}
    )


dev_router = APIRouter(tags=["dev issuer"])


@dev_router.get("/dev-issuer/{t}/.well-known/openid-configuration")
def dev_issuer_metadata(t: Annotated[str, Path(max_length=100)], request: Request) -> dict[str, Any]:
    """The dev issuer's discovery document (only with --demo or LICENSEDESK_DEV_ISSUER=1)."""
    checker: Checker = request.app.state.checker
    tenant = tenancy.get_tenant(checker.ctx, t)
    issuer = checker.dev_issuer_of(tenant.slug)
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "id_token_signing_alg_values_supported": ["RS256"],
    }


@dev_router.get("/dev-issuer/{t}/.well-known/jwks.json")
def dev_issuer_keys(t: Annotated[str, Path(max_length=100)], request: Request) -> dict[str, Any]:
    checker: Checker = request.app.state.checker
    tenant = tenancy.get_tenant(checker.ctx, t)
    return {"keys": checker.keys.published(signing.DEV_ISSUER, tenant.id)}


_ROUTE = "/v1/licensing/{product_id}/servicePlans"


class CheckFastPath:
    """Answers GET servicePlans from the caches without the framework's routing and middleware (it sets
    X-Request-Id and counts the request itself); a cache miss's slow path runs in a thread. The
    application hands it the requests it `handles` before anything else sees them."""

    def __init__(self, checker_of: Any) -> None:
        self.checker_of = checker_of

    @staticmethod
    def handles(scope: dict[str, Any]) -> re.Match[str] | None:
        if scope["type"] != "http":
            return None
        if scope["method"] == "OPTIONS":  # CORS preflight of a visual in another origin
            return LICENSING_PATH.match(scope["path"])
        if scope["method"] not in ("GET", "HEAD"):
            return None
        return SERVICE_PLANS.match(scope["path"])

    async def serve(self, scope: dict[str, Any], match: re.Match[str], send: Any) -> None:
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": PREFLIGHT})
            await send({"type": "http.response.body", "body": b""})
            return
        started = time.perf_counter()
        checker: Checker = self.checker_of()
        authorization = if_none_match = request_id = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
            elif name == b"x-request-id":
                request_id = value.decode("latin-1")
        if request_id is None or not SANE_REQUEST_ID.match(request_id):
            request_id = new_request_id()
        product_id = match.group(1)
        result: Result | Lead | None
        try:
            result = _from_cache(checker, authorization, product_id, if_none_match)
        except RateLimited as exc:
            result = _rate_limited(exc)
        if result is None:
            # a token to validate costs far more than a cached answer: limited per client address
            client = scope.get("client")
            wait = checker.address_limiter.hit(client[0] if client else "")
            if wait:
                result = _rate_limited(
                    RateLimited(wait, "too many checks from this address; try again later")
                )
        if isinstance(result, Lead):  # the answer changed: this request reads it for everyone
            lead, token = result, request_id_var.set(request_id)
            try:
                result = await run_in_threadpool(respond_lead, checker, lead, if_none_match)
            finally:
                request_id_var.reset(token)
                checker.abandon(lead)  # if cancelled before the read began
        elif result is None:
            token = request_id_var.set(request_id)
            try:
                result = await run_in_threadpool(respond, checker, authorization, product_id, if_none_match)
            finally:
                request_id_var.reset(token)
        status, body, headers = result
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": (*headers, (b"x-request-id", request_id.encode())),
            }
        )
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
        elapsed = time.perf_counter() - started
        metrics.observe_request(scope["method"], _ROUTE, status, elapsed)
        if access_log.isEnabledFor(logging.DEBUG):
            access_log.debug(
                "%s %s %s %.2fms",
                scope["method"],
                scope["path"],
                status,
                elapsed * 1000,
                extra={"request_id": request_id},
            )


def _from_cache(
    checker: Checker, authorization: str | None, product_id: str, if_none_match: str | None
) -> Result | Lead | None:
    """The answer when the token and the answer are both cached and current; a Lead when this request is
    to read a changed answer; None otherwise (no I/O here)."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    answer = checker.cached_service_plans(authorization[7:].strip(), product_id)
    return answer if answer is None or isinstance(answer, Lead) else _render(answer, if_none_match)
