"""HTTP fixtures: the app on the test database, a client, and a token of every role in two tenants."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from licensedesk.app import create_app
from licensedesk.auth import service as auth
from licensedesk.auth.roles import TENANT_ROLES
from licensedesk.licensing import processing
from licensedesk.settings import Settings
from tests.world import make_world


@dataclass
class Api:
    client: TestClient
    ctx: object
    tenant: str
    other_tenant: str
    tokens: dict[str, str]  # role -> secret, in tenant; "operator" too
    other_tokens: dict[str, str]  # role -> secret, in other_tenant

    def headers(self, role: str = "global_admin", other: bool = False, **extra: str) -> dict[str, str]:
        secret = (self.other_tokens if other else self.tokens)[role]
        return {"Authorization": f"Bearer {secret}", **extra}

    def call(
        self,
        method: str,
        path: str,
        role: str = "global_admin",
        *,
        other: bool = False,
        json=None,  # type: ignore[no-untyped-def]
        headers: dict[str, str] | None = None,
        **kw,
    ):
        return self.client.request(
            method, path, json=json, headers={**self.headers(role, other), **(headers or {})}, **kw
        )

    def get(self, path: str, role: str = "global_admin", **kw):  # type: ignore[no-untyped-def]
        return self.call("GET", path, role, **kw)

    def post(self, path: str, json=None, role: str = "global_admin", **kw):  # type: ignore[no-untyped-def]
        return self.call("POST", path, role, json=json, **kw)

    def patch(self, path: str, json=None, role: str = "global_admin", **kw):  # type: ignore[no-untyped-def]
        return self.call("PATCH", path, role, json=json, **kw)

    def delete(self, path: str, role: str = "global_admin", **kw):  # type: ignore[no-untyped-def]
        return self.call("DELETE", path, role, **kw)

    def drain(self) -> int:
        return processing.drain(self.ctx)  # type: ignore[arg-type]


@pytest.fixture
def api(ctx, database_url) -> Iterator[Api]:
    w = make_world(ctx, "contoso")
    other = make_world(ctx, "fabrikam")
    tokens = {role: auth.create_token(ctx, role, tenant_ref=w.tenant)[1] for role in TENANT_ROLES}
    tokens["operator"] = auth.create_token(ctx, "operator")[1]
    other_tokens = {role: auth.create_token(ctx, role, tenant_ref=other.tenant)[1] for role in TENANT_ROLES}
    app = create_app(
        Settings(database_url=database_url), db=ctx.db, clock=ctx.clock, run_worker=False, migrate=False
    )
    with TestClient(app, raise_server_exceptions=True) as client:
        yield Api(client, ctx, w.tenant, other.tenant, tokens, other_tokens)
