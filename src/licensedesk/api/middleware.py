"""ASGI middleware: request ids, the body size limit, metrics and the access log."""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import re
import time
import uuid
from typing import Any

from licensedesk import metrics

log = logging.getLogger("licensedesk.access")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "licensedesk_request_id", default=None
)
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

MIB = 1024 * 1024
_ID_PREFIX = uuid.uuid4().hex[:12]
_id_counter = itertools.count(1)


def new_request_id() -> str:
    """Unique across processes (a random prefix per process) and cheap (no randomness per request)."""
    return f"{_ID_PREFIX}{next(_id_counter):08x}"


def _problem(status: int, code: str, title: str, detail: str) -> bytes:
    return json.dumps(
        {
            "type": f"urn:licensedesk:problem:{code}",
            "title": title,
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()


class RequestContext:
    """X-Request-Id on every answer (the caller's, when sane, else a new one), in the logs and audit
    events; the request count and latency by route and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        rid = incoming if incoming and SANE_REQUEST_ID.match(incoming) else new_request_id()
        token = request_id_var.set(rid)
        started = time.perf_counter()
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            # no id, name or filter may hold a NUL: refuse before anything tries to look it up
            body = _problem(400, "invalid_request", "Malformed request", "the URL contains a NUL character")
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [
                        (b"content-type", b"application/problem+json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"x-request-id", rid.encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            request_id_var.reset(token)
            return
        status_holder = {"status": 500}
        header = (b"x-request-id", rid.encode())

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or scope.get("route_template") or "unmatched"
            metrics.observe_request(scope.get("method", ""), template, status_holder["status"], elapsed)
            log.info(
                "%s %s %s %.1fms",
                scope.get("method"),
                scope.get("path"),
                status_holder["status"],
                elapsed * 1000,
                extra={"request_id": rid},
            )
            request_id_var.reset(token)


class BodyLimit:
    """Refuse bodies over the limit with 413 before reading them (Content-Length) or while reading."""

    def __init__(self, app: Any, limit: int = MIB, overrides: tuple[tuple[str, int], ...] = ()) -> None:
        self.app = app
        self.limit = limit
        self.overrides = overrides

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.overrides:
            if path.startswith(prefix):
                return limit
        return self.limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(send, limit)
                    return
        received = 0
        refused = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received, refused
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    raise _TooLarge()
            return message

        started = False

        async def guarded_send(message: dict[str, Any]) -> None:
            # the framework may turn the failed read into an answer of its own: answer 413 instead
            nonlocal started
            if refused:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(send, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not started:
                await self._refuse(send, limit)
        except Exception:
            if refused and not started:
                await self._refuse(send, limit)
                return
            raise

    @staticmethod
    async def _refuse(send: Any, limit: int) -> None:
        body = _problem(
            413, "body_too_large", "Request body too large", f"the request body is over {limit} bytes"
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
