"""An app with the dev issuer on, the Contoso world, and a way to mint user tokens."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from licensedesk.app import create_app
from licensedesk.auth import service as auth
from licensedesk.checks.service import Checker
from licensedesk.settings import Settings
from tests.world import World, make_world

PRODUCT = "innofalls-charts"
SERVICE_PLANS = f"/v1/licensing/{PRODUCT}/servicePlans"


@dataclass
class CheckEnv:
    client: TestClient
    world: World
    other: World
    checker: Checker
    operator: str

    def token(self, upn: str, tenant: str | None = None, **kw: Any) -> str:
        return self.checker.mint_dev_token(tenant or self.world.tenant, upn, PRODUCT, **kw)

    def check(self, token: str, **headers: str):  # type: ignore[no-untyped-def]
        return self.client.get(SERVICE_PLANS, headers={"Authorization": f"Bearer {token}", **headers})

    def plans(self, token: str) -> list[dict[str, Any]]:
        r = self.check(token)
        assert r.status_code == 200, r.text
        return r.json()["plans"]  # type: ignore[no-any-return]


@pytest.fixture
def env(ctx, database_url) -> Iterator[CheckEnv]:
    world = make_world(ctx, "contoso")
    other = make_world(ctx, "fabrikam")
    settings = Settings(database_url=database_url, dev_issuer=True, public_url="http://testserver")
    app = create_app(settings, db=ctx.db, clock=ctx.clock, run_worker=False, migrate=False)
    operator = auth.create_token(ctx, "operator")[1]
    with TestClient(app) as client:
        yield CheckEnv(client, world, other, app.state.checker, operator)
