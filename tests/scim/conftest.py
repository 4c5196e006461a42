"""SCIM fixtures: the app on the test database, and a scim token of tenant contoso (plus one of fabrikam)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from licensedesk.app import create_app
from licensedesk.auth import service as auth
from licensedesk.settings import Settings
from tests.world import World, make_world

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


@dataclass
class Scim:
    client: TestClient
    world: World
    base: str  # /scim/v2/contoso
    token: str

    def call(
        self, method: str, path: str, json: Any = None, headers: dict[str, str] | None = None, **kw: Any
    ):  # type: ignore[no-untyped-def]
        return self.client.request(
            method,
            self.base + path,
            json=json,
            headers={"Authorization": f"Bearer {self.token}", **(headers or {})},
            **kw,
        )

    def get(self, path: str, **kw: Any):  # type: ignore[no-untyped-def]
        return self.call("GET", path, **kw)

    def post(self, path: str, json: Any, **kw: Any):  # type: ignore[no-untyped-def]
        return self.call("POST", path, json, **kw)

    def patch(self, path: str, operations: list[dict[str, Any]], **kw: Any):  # type: ignore[no-untyped-def]
        return self.call("PATCH", path, {"schemas": [PATCH], "Operations": operations}, **kw)

    def put(self, path: str, json: Any, **kw: Any):  # type: ignore[no-untyped-def]
        return self.call("PUT", path, json, **kw)

    def delete(self, path: str, **kw: Any):  # type: ignore[no-untyped-def]
        return self.call("DELETE", path, **kw)

    def user(self, upn: str, **extra: Any) -> dict[str, Any]:
        r = self.post("/Users", {"schemas": [USER], "userName": upn, "active": True, **extra})
        assert r.status_code == 201, r.text
        return r.json()

    def group(self, name: str, members: list[str] = (), **extra: Any) -> dict[str, Any]:  # type: ignore[assignment]
        body = {"schemas": [GROUP], "displayName": name, "members": [{"value": m} for m in members], **extra}
        r = self.post("/Groups", body)
        assert r.status_code == 201, r.text
        return r.json()


def assert_scim_error(response: Any, status: int, scim_type: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body
    return body


@pytest.fixture
def scim(ctx, database_url) -> Iterator[Scim]:  # type: ignore[no-untyped-def]
    world = make_world(ctx, "contoso")
    token = auth.create_token(ctx, "scim", tenant_ref=world.tenant, name="Entra provisioning")[1]
    app = create_app(
        Settings(database_url=database_url), db=ctx.db, clock=ctx.clock, run_worker=False, migrate=False
    )
    with TestClient(app, raise_server_exceptions=True) as client:
        yield Scim(client, world, "/scim/v2/contoso", token)
