"""Idempotency-Key on mutating POSTs: the same key and body within 24 h answers the first answer again and
changes nothing; the same key with another body is a 422. Keys are scoped to the caller."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from fastapi.routing import APIRoute
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from licensedesk.api.problems import ApiError, domain_problem, problem
from licensedesk.context import Context
from licensedesk.db.schema import SYSTEM_TENANT, idempotency_records
from licensedesk.errors import DomainError

KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
KEEP = timedelta(hours=24)
_last_purge = [0.0]


def _begin(ctx: Context, tenant_id: str, key_hash: str, body_hash: str, method: str, path: str) -> Any:
    """Insert a pending record, or answer the one that exists."""
    now = ctx.clock.now()
    r = idempotency_records
    with ctx.db.write() as conn:
        if time.monotonic() - _last_purge[0] > 600:
            _last_purge[0] = time.monotonic()
            conn.execute(delete(r).where(r.c.created_at < now - KEEP))
        row = conn.execute(select(r).where(r.c.tenant_id == tenant_id, r.c.key_hash == key_hash)).first()
        if row is not None and row.created_at >= now - KEEP:
            return row
        if row is not None:
            conn.execute(delete(r).where(r.c.tenant_id == tenant_id, r.c.key_hash == key_hash))
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(r).values(
                        tenant_id=tenant_id,
                        key_hash=key_hash,
                        method=method,
                        path=path[:2000],
                        body_hash=body_hash,
                        status=0,
                        created_at=now,
                    )
                )
        except IntegrityError:
            return conn.execute(select(r).where(r.c.tenant_id == tenant_id, r.c.key_hash == key_hash)).first()
    return None


def _finish(ctx: Context, tenant_id: str, key_hash: str, response: Response) -> None:
    r = idempotency_records
    with ctx.db.write() as conn:
        conn.execute(
            update(r)
            .where(r.c.tenant_id == tenant_id, r.c.key_hash == key_hash)
            .values(
                status=response.status_code,
                content_type=response.headers.get("content-type"),
                body=bytes(response.body).decode("utf-8"),
            )
        )


def _abandon(ctx: Context, tenant_id: str, key_hash: str) -> None:
    r = idempotency_records
    with ctx.db.write() as conn:
        conn.execute(delete(r).where(r.c.tenant_id == tenant_id, r.c.key_hash == key_hash, r.c.status == 0))


class IdempotentRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            key = request.headers.get("idempotency-key")
            if request.method != "POST" or key is None:
                return await original(request)
            if not KEY.match(key):
                return problem(
                    400, "invalid_idempotency_key", "Idempotency-Key must be 1-255 visible ASCII characters"
                )
            from licensedesk.api.deps import authenticate

            principal = authenticate(request)
            ctx: Context = request.app.state.ctx
            body = await request.body()
            tenant_id = principal.tenant_id or SYSTEM_TENANT
            key_hash = hashlib.sha256(f"{principal.kind}\0{principal.id}\0{key}".encode()).hexdigest()
            body_hash = hashlib.sha256(
                request.method.encode() + b"\0" + request.url.path.encode() + b"\0" + body
            ).hexdigest()
            existing = await run_in_threadpool(
                _begin, ctx, tenant_id, key_hash, body_hash, request.method, request.url.path
            )
            if existing is not None:
                if existing.body_hash != body_hash:
                    return problem(
                        422,
                        "idempotency_key_reused",
                        "this Idempotency-Key was used with another request in the last 24 hours",
                    )
                if existing.status == 0:
                    return problem(
                        409,
                        "idempotency_in_progress",
                        "a request with this Idempotency-Key is still being processed",
                    )
                return Response(
                    existing.body or "",
                    status_code=existing.status,
                    media_type=existing.content_type,
                    headers={"Idempotent-Replayed": "true"},
                )
            try:
                response = await original(request)
            except DomainError as exc:
                response = domain_problem(exc)
            except ApiError as exc:
                response = problem(exc.status, exc.code, exc.detail, headers=exc.headers)
            except BaseException:
                await run_in_threadpool(_abandon, ctx, tenant_id, key_hash)
                raise
            if response.status_code < 500 and hasattr(response, "body"):
                await run_in_threadpool(_finish, ctx, tenant_id, key_hash, response)
            else:
                await run_in_threadpool(_abandon, ctx, tenant_id, key_hash)
            return response

        return handler
