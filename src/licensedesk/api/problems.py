"""RFC 9457 problem documents: every refusal, whatever raised it, answers in this one shape."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from licensedesk.errors import DomainError
from licensedesk.ratelimit import RateLimited, retry_after

log = logging.getLogger("licensedesk.api")

PROBLEM_JSON = "application/problem+json"
DATABASE_UNAVAILABLE = "the database is not reachable; try again shortly"

_TITLES = {
    400: "Malformed request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid value",
    429: "Too many requests",
    503: "Service unavailable",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    # the explaining fields never override the five that every problem document has
    body = {
        **extra,
        "type": f"urn:licensedesk:problem:{code}",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def domain_problem(exc: DomainError) -> JSONResponse:
    return problem(exc.status, exc.code, exc.detail, title=exc.title, **exc.extra)


class ApiError(Exception):
    """An HTTP-level refusal (authentication, roles, media types) raised from dependencies."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers


# pydantic error types that mean "malformed" (400) rather than "well-formed but invalid" (422)
_MALFORMED = {
    "json_invalid",
    "extra_forbidden",
    "missing",
    "model_type",
    "model_attributes_type",
    "dict_type",
    "list_type",
    "string_type",
    "int_type",
    "bool_type",
    "float_type",
    "int_from_float",
    "json_type",
    "int_parsing",
    "bool_parsing",
    "float_parsing",
    "datetime_type",
    "uuid_type",
}


def _errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ()) if p not in ("body",)]
        out.append({"field": ".".join(loc), "message": e.get("msg", ""), "type": e.get("type", "")})
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_request: Request, exc: DomainError) -> JSONResponse:
        return domain_problem(exc)

    @app.exception_handler(ApiError)
    async def _api(_request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _errors(exc)
        malformed = any(e["type"] in _MALFORMED for e in errors)
        first = errors[0] if errors else {"field": "", "message": "invalid request"}
        where = f"{first['field']}: " if first["field"] else ""
        if malformed:
            return problem(400, "invalid_request", f"{where}{first['message']}", errors=errors)
        return problem(422, "validation_error", f"{where}{first['message']}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        detail = str(exc.detail) if exc.detail else _TITLES.get(exc.status_code, "error")
        return problem(exc.status_code, code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(DataError)
    async def _bad_value(_request: Request, exc: DataError) -> JSONResponse:
        # a value the database cannot store (e.g. NUL in text on PostgreSQL) that no check caught first
        log.warning("value refused by the database: %s", exc.orig)
        return problem(400, "invalid_value", "a value in the request cannot be stored (control characters?)")

    @app.exception_handler(RateLimited)
    async def _rate_limited(_request: Request, exc: RateLimited) -> JSONResponse:
        return problem(429, "rate_limited", exc.detail, headers={"Retry-After": retry_after(exc.wait)})

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)  # a connection psycopg already knows to be closed
    async def _database_down(_request: Request, exc: OperationalError | InterfaceError) -> JSONResponse:
        # the database is unreachable or overloaded: a retryable 503, never a 500
        log.warning("database unavailable: %s", exc.orig)
        return problem(
            503,
            "database_unavailable",
            DATABASE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
