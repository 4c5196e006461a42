"""The portal on the test database (both backends): two tenants, a signed-in browser-like client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient

from licensedesk.app import create_app
from licensedesk.auth import service as auth
from licensedesk.auth.roles import TENANT_ROLES
from licensedesk.billing import service as billing
from licensedesk.directory import service as directory
from licensedesk.licensing import processing
from licensedesk.licensing import service as licensing
from licensedesk.settings import Settings
from tests.world import PLAN, make_world

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Tenant:
    id: str
    tokens: dict[str, str]  # role -> secret
    users: dict[str, str] = field(default_factory=dict)  # upn -> id
    groups: dict[str, str] = field(default_factory=dict)  # name -> id


@dataclass
class Portal:
    app: object
    ctx: object
    a: Tenant
    b: Tenant
    operator: str

    def client(self, base_url: str = "http://testserver") -> TestClient:
        return TestClient(self.app, base_url=base_url, follow_redirects=False)  # type: ignore[arg-type]

    def signed_in(self, role: str = "global_admin", tenant: Tenant | None = None) -> TestClient:
        c = self.client()
        answer = c.post("/admin/sign-in", data={"token": (tenant or self.a).tokens[role]})
        assert answer.status_code == 303, answer.text
        return c


def csrf(page_html: str) -> str:
    match = CSRF.search(page_html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def _populate(ctx, slug: str, names: list[str]) -> Tenant:  # type: ignore[no-untyped-def]
    w = make_world(ctx, slug)
    tokens = {role: auth.create_token(ctx, role, tenant_ref=w.tenant)[1] for role in TENANT_ROLES}
    t = Tenant(w.tenant, tokens)
    for name in names:
        upn = f"{name.lower()}@{slug}.example"
        t.users[upn] = directory.create_user(ctx, w.tenant, upn, f"{name} {slug.title()}").id
    ids = list(t.users.values())
    t.groups["Analysts"] = directory.create_group(
        ctx, w.tenant, f"Analysts {slug}", members={"users": ids[2:4]}
    ).id
    billing.create_subscription(ctx, w.tenant, PLAN, 3)
    licensing.assign(ctx, w.tenant, PLAN, users=ids[:1])
    licensing.assign(ctx, w.tenant, PLAN, groups=[t.groups["Analysts"]])
    processing.drain(ctx)
    return t


@pytest.fixture
def portal(ctx, database_url) -> Iterator[Portal]:  # type: ignore[no-untyped-def]
    a = _populate(ctx, "contoso", ["Ada", "Bo", "Cy", "Di", "Eve"])
    b = _populate(ctx, "fabrikam", ["Zed", "Yan", "Xia", "Wu"])
    operator = auth.create_token(ctx, "operator")[1]
    app = create_app(
        Settings(database_url=database_url), db=ctx.db, clock=ctx.clock, run_worker=False, migrate=False
    )
    with TestClient(app):  # runs the lifespan once
        yield Portal(app, ctx, a, b, operator)
