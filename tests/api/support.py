"""Helpers shared by the HTTP tests: seeding objects, problem-document checks, and "nothing changed"
snapshots of the database."""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from licensedesk.auth import service as auth
from licensedesk.billing import service as billing
from licensedesk.db.schema import metadata
from licensedesk.directory import service as directory
from licensedesk.licensing import service as licensing

PLAN = "innofalls-charts-pro"
BASIC = "innofalls-charts-basic"
PRODUCT = "innofalls-charts"
PROBLEM_JSON = "application/problem+json"

ROLES = ("operator", "global_admin", "license_admin", "billing_admin", "reader", "scim")
TENANT_ROLES = ROLES[1:]

_serial = itertools.count(1)


def serial() -> int:
    return next(_serial)


def lenient(api: Any) -> TestClient:
    """A client on the same app that turns server exceptions into 500 answers instead of raising, so
    that table-driven tests report every failing row, not just the first."""
    return TestClient(api.client.app, raise_server_exceptions=False)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def cursor_of(value: Any) -> str:
    """A cursor as this service encodes them (base64url JSON, no padding), with any content."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def assert_problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem document with the stable fields of SPEC section 2."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: expected {status}, "
        f"got {response.status_code}: {response.text[:500]}"
    )
    assert response.headers.get("content-type", "").startswith(PROBLEM_JSON), response.headers
    body = response.json()
    for name in ("type", "title", "status", "detail", "code"):
        assert name in body, f"problem document without {name}: {body}"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["type"], str) and body["type"]
    if code is not None:
        assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


@dataclass
class Seed:
    """Fresh objects in one tenant, made through the service layer (fast, and independent of the API
    under test). Every name is unique within the test."""

    api: Any
    tenant: str  # tenant id
    domain: str = "contoso.com"
    made: list[str] = field(default_factory=list)

    @property
    def ctx(self) -> Any:
        return self.api.ctx

    def user(self, prefix: str = "user", **kw: Any) -> dict[str, str]:
        n = serial()
        u = directory.create_user(
            self.ctx, self.tenant, f"{prefix}{n}@{self.domain}", f"{prefix.title()} Number{n}", **kw
        )
        return {"id": u.id, "upn": u.user_principal_name}

    def group(self, name: str | None = None, users: Iterable[str] = (), groups: Iterable[str] = ()) -> str:
        n = serial()
        return directory.create_group(
            self.ctx,
            self.tenant,
            name or f"Group {n}",
            members={"users": list(users), "groups": list(groups)},
        ).id

    def buy(self, quantity: int, plan: str = PLAN, **kw: Any) -> str:
        return billing.create_subscription(self.ctx, self.tenant, plan, quantity, **kw).id  # type: ignore[no-any-return]

    def assign(self, users: Iterable[str] = (), groups: Iterable[str] = (), plan: str = PLAN) -> None:
        licensing.assign(self.ctx, self.tenant, plan, users=list(users), groups=list(groups))

    def token(self, role: str = "reader") -> tuple[str, str]:
        token, secret = auth.create_token(self.ctx, role, tenant_ref=self.tenant, name=f"seed {serial()}")
        return token.id, secret


# ---------------------------------------------------------------- routes


def shape(key: tuple[str, str]) -> tuple[str, str]:
    """A route with its placeholders' names erased: {productId} and {product_id} are one route."""
    return key[0], re.sub(r"\{[^}]*\}", "{}", key[1])


def served_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path template) of every route of the app, included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts

        routes: Any = list(iter_route_contexts(app.routes))
    except ImportError:  # older FastAPI: app.routes is already flat
        routes = app.routes
    out = set()
    for route in routes:
        path = getattr(route, "path", None)
        for method in getattr(route, "methods", None) or ():
            if method not in ("HEAD", "OPTIONS") and path:
                out.add((method, path))
    return out


# ---------------------------------------------------------------- "nothing changed"

# Tables whose rows are bookkeeping, not state: idempotency records, scratch tables of the seating
# engine. api_tokens.last_used_at moves on the first use of a token (by design).
_SKIP_TABLES = {"idempotency_records", "work_desired", "work_scope", "work_seat_changes"}
_SKIP_COLUMNS = {("api_tokens", "last_used_at")}


def db_state(api: Any) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every state table, as sorted text tuples."""
    state: dict[str, list[tuple[str, ...]]] = {}
    with api.ctx.db.read() as conn:
        for table in metadata.sorted_tables:
            if table.name in _SKIP_TABLES:
                continue
            cols = [c for c in table.columns if (table.name, c.name) not in _SKIP_COLUMNS]
            rows = conn.execute(select(*cols)).all()
            state[table.name] = sorted(tuple(repr(v) for v in row) for row in rows)
    return state


def http_state(api: Any, tenant: str | None = None) -> dict[str, Any]:
    """What an admin sees: the audit log and the Licenses page (SPEC section 2)."""
    t = tenant or api.tenant
    headers = bearer(api.tokens["operator"])
    audit = api.client.get(f"/v1/tenants/{t}/audit?limit=1000", headers=headers)
    overview = api.client.get(f"/v1/tenants/{t}/licenses", headers=headers)
    assert audit.status_code == 200 and overview.status_code == 200
    return {"audit": audit.json(), "licenses": overview.json()}


@dataclass
class Unchanged:
    """Take a snapshot; `check()` asserts that nothing visible or stored changed since."""

    api: Any
    before_db: dict[str, list[tuple[str, ...]]] = field(init=False)
    before_http: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.before_db = db_state(self.api)
        self.before_http = http_state(self.api)

    def check(self, what: str = "") -> None:
        after_db = db_state(self.api)
        changed = {
            name: {
                "added": sorted(set(after_db[name]) - set(rows))[:3],
                "removed": sorted(set(rows) - set(after_db[name]))[:3],
            }
            for name, rows in self.before_db.items()
            if after_db[name] != rows
        }
        assert not changed, f"{what}: the database changed: {changed}"
        after_http = http_state(self.api)
        # the snapshot's own GET of the audit log writes nothing; compare as the admin sees it
        assert after_http == self.before_http, f"{what}: the audit log or the licenses overview changed"
