"""The role matrix of SPEC section 2, route by route and role by role, and tenant isolation.

The expectation table below is written from SPEC section 2's role table, not derived from the code:

| role          | may                                                          |
| operator      | everything, including tenants, catalog, subscriptions        |
| global_admin  | everything in the tenant                                     |
| license_admin | read; assign, unassign, reassign, reprocess                  |
| billing_admin | read; subscriptions                                          |
| reader        | read                                                         |
| scim          | the tenant's SCIM endpoint only                              |

Readings of the SPEC where it is terse (each is a choice written down here, not taken from src):
- "read" is every GET of the tenant's licensing data (tenant, catalog, subscriptions, licenses,
  directory, audit). A scim token reads nothing outside SCIM.
- `GET /tenants` is the operator's list; a tenant's own readers may call it and see only their tenant
  ("a tenant's own admins may GET ... theirs"); that they see only theirs is checked in
  test_endpoints.py. `PATCH /tenants/{t}` is a write: operator and global_admin.
- API tokens are credentials, not licensing data: listing, creating and revoking them is "everything in
  the tenant" (global_admin) and the operator's, not "read".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.support import (
    PLAN,
    PRODUCT,
    ROLES,
    TENANT_ROLES,
    Seed,
    Unchanged,
    assert_problem,
    bearer,
    lenient,
    serial,
    served_routes,
    shape,
)

OP = frozenset({"operator"})
READ = frozenset({"operator", "global_admin", "license_admin", "billing_admin", "reader"})
TENANT_WRITE = frozenset({"operator", "global_admin"})
DIRECTORY_WRITE = frozenset({"operator", "global_admin"})
LICENSE_WRITE = frozenset({"operator", "global_admin", "license_admin"})
SUBSCRIPTION_WRITE = frozenset({"operator", "global_admin", "billing_admin"})
TOKENS = frozenset({"operator", "global_admin"})
SCIM = frozenset({"scim"})  # not even the operator: SPEC gives the SCIM endpoint to the scim role only
SCIM_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
SCIM_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@dataclass
class Req:
    method: str
    path: str
    json: Any = None
    ok: int = 200  # the status an allowed caller gets


@dataclass
class Ctx:
    """What a builder needs: the tenant (id) and a seed of fresh objects in it."""

    t: str
    seed: Seed


Builder = Callable[[Ctx], Req]


def _new_upn() -> str:
    return f"scim{serial()}@contoso.com"


def _scim_put(c: Ctx, user: dict[str, str]) -> Req:
    return Req("PUT", f"/scim/v2/{c.t}/Users/{user['id']}", {"schemas": [SCIM_USER], "userName": user["upn"]})


def assert_refusal(response: Any, status: int, code: str) -> None:
    """A problem document, or on the SCIM endpoint a SCIM error document (RFC 7644 section 3.12)."""
    if response.request.url.path.startswith("/scim/"):
        assert response.status_code == status, response.text
        body = response.json()
        assert body["schemas"] == [SCIM_ERROR] and body["status"] == str(status), body
        return
    assert_problem(response, status, code)


def _user(c: Ctx) -> str:
    return c.seed.user()["id"]


def _assigned_user(c: Ctx) -> str:
    u = _user(c)
    c.seed.assign(users=[u])
    return u


def _token_id(c: Ctx) -> str:
    return c.seed.token("reader")[0]


HOOK = "https://vendor.example/hooks/licensedesk"


def _endpoint(c: Ctx, *, tenant: bool = True) -> str:
    from licensedesk.webhooks import service as webhooks

    return webhooks.create_endpoint(c.seed.ctx, c.t if tenant else None, HOOK)[0].id


def _delivery(c: Ctx, *, tenant: bool = True) -> tuple[str, str]:
    """An endpoint with one delivery (of a license change) in its log."""
    from licensedesk.webhooks import service as webhooks

    endpoint = _endpoint(c, tenant=tenant)
    _assigned_user(c)
    log = webhooks.list_deliveries(c.seed.ctx, c.t if tenant else None, endpoint).items
    return endpoint, log[0].id


# (method, path template) -> (roles allowed, a builder of a valid request that reaches the handler)
TABLE: dict[tuple[str, str], tuple[frozenset[str], Builder]] = {
    # tenants
    ("POST", "/v1/tenants"): (
        OP,
        lambda c: Req("POST", "/v1/tenants", {"slug": f"tenant-{serial()}", "name": "New Tenant"}, 201),
    ),
    ("GET", "/v1/tenants"): (READ, lambda c: Req("GET", "/v1/tenants")),
    ("GET", "/v1/tenants/{t}"): (READ, lambda c: Req("GET", f"/v1/tenants/{c.t}")),
    ("PATCH", "/v1/tenants/{t}"): (
        TENANT_WRITE,
        lambda c: Req("PATCH", f"/v1/tenants/{c.t}", {"name": f"Contoso {serial()}"}),
    ),
    # catalog
    ("GET", "/v1/products"): (READ, lambda c: Req("GET", "/v1/products")),
    ("POST", "/v1/products"): (
        OP,
        lambda c: (
            lambda n: Req(
                "POST", "/v1/products", {"id": f"p-{n}", "name": "P", "audience": f"api://p-{n}"}, 201
            )
        )(serial()),
    ),
    ("POST", "/v1/products/{p}/plans"): (
        OP,
        lambda c: (
            lambda n: Req(
                "POST",
                f"/v1/products/{PRODUCT}/plans",
                {"id": f"plan-{n}", "name": "Plan", "spIdentifier": f"sp.{n}", "trialDays": 0},
                201,
            )
        )(serial()),
    ),
    ("GET", "/v1/plans"): (READ, lambda c: Req("GET", "/v1/plans")),
    # subscriptions
    ("GET", "/v1/tenants/{t}/subscriptions"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/subscriptions"),
    ),
    ("POST", "/v1/tenants/{t}/subscriptions"): (
        SUBSCRIPTION_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/subscriptions", {"planId": PLAN, "quantity": 1}, 201),
    ),
    ("GET", "/v1/tenants/{t}/subscriptions/{id}"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/subscriptions/{c.seed.buy(1)}"),
    ),
    ("PATCH", "/v1/tenants/{t}/subscriptions/{id}"): (
        SUBSCRIPTION_WRITE,
        lambda c: Req("PATCH", f"/v1/tenants/{c.t}/subscriptions/{c.seed.buy(2)}", {"autoRenew": True}),
    ),
    # licenses
    ("GET", "/v1/tenants/{t}/licenses"): (READ, lambda c: Req("GET", f"/v1/tenants/{c.t}/licenses")),
    ("GET", "/v1/tenants/{t}/licenses/{plan}"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/licenses/{PLAN}"),
    ),
    ("GET", "/v1/tenants/{t}/licenses/{plan}/users"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/licenses/{PLAN}/users"),
    ),
    ("GET", "/v1/tenants/{t}/licenses/{plan}/groups"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/licenses/{PLAN}/groups"),
    ),
    ("POST", "/v1/tenants/{t}/licenses/{plan}/assign"): (
        LICENSE_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/licenses/{PLAN}/assign", {"users": [_user(c)]}),
    ),
    ("POST", "/v1/tenants/{t}/licenses/{plan}/unassign"): (
        LICENSE_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/licenses/{PLAN}/unassign", {"users": [_assigned_user(c)]}),
    ),
    ("POST", "/v1/tenants/{t}/licenses/{plan}/reassign"): (
        LICENSE_WRITE,
        lambda c: Req(
            "POST",
            f"/v1/tenants/{c.t}/licenses/{PLAN}/reassign",
            {"from": _assigned_user(c), "to": _user(c)},
        ),
    ),
    ("GET", "/v1/tenants/{t}/users/{user}/licenses"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/users/{_assigned_user(c)}/licenses"),
    ),
    ("GET", "/v1/tenants/{t}/groups/{id}/licenses"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/groups/{c.seed.group()}/licenses"),
    ),
    ("POST", "/v1/tenants/{t}/users/{user}/reprocess"): (
        LICENSE_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/users/{_assigned_user(c)}/reprocess"),
    ),
    ("POST", "/v1/tenants/{t}/groups/{id}/reprocess"): (
        LICENSE_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/groups/{c.seed.group(users=[_user(c)])}/reprocess", ok=202),
    ),
    # directory
    ("GET", "/v1/tenants/{t}/users"): (READ, lambda c: Req("GET", f"/v1/tenants/{c.t}/users")),
    ("POST", "/v1/tenants/{t}/users"): (
        DIRECTORY_WRITE,
        lambda c: Req(
            "POST", f"/v1/tenants/{c.t}/users", {"userPrincipalName": f"new{serial()}@contoso.com"}, 201
        ),
    ),
    ("GET", "/v1/tenants/{t}/users/{user}"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/users/{_user(c)}"),
    ),
    ("PATCH", "/v1/tenants/{t}/users/{user}"): (
        DIRECTORY_WRITE,
        lambda c: Req("PATCH", f"/v1/tenants/{c.t}/users/{_user(c)}", {"displayName": "Renamed"}),
    ),
    ("DELETE", "/v1/tenants/{t}/users/{user}"): (
        DIRECTORY_WRITE,
        lambda c: Req("DELETE", f"/v1/tenants/{c.t}/users/{_user(c)}", ok=204),
    ),
    ("GET", "/v1/tenants/{t}/groups"): (READ, lambda c: Req("GET", f"/v1/tenants/{c.t}/groups")),
    ("POST", "/v1/tenants/{t}/groups"): (
        DIRECTORY_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/groups", {"displayName": f"New group {serial()}"}, 201),
    ),
    ("GET", "/v1/tenants/{t}/groups/{id}"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/groups/{c.seed.group()}"),
    ),
    ("PATCH", "/v1/tenants/{t}/groups/{id}"): (
        DIRECTORY_WRITE,
        lambda c: Req("PATCH", f"/v1/tenants/{c.t}/groups/{c.seed.group()}", {"description": "x"}),
    ),
    ("DELETE", "/v1/tenants/{t}/groups/{id}"): (
        DIRECTORY_WRITE,
        lambda c: Req("DELETE", f"/v1/tenants/{c.t}/groups/{c.seed.group()}", ok=204),
    ),
    ("GET", "/v1/tenants/{t}/groups/{id}/members"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/groups/{c.seed.group(users=[_user(c)])}/members"),
    ),
    ("POST", "/v1/tenants/{t}/groups/{id}/members"): (
        DIRECTORY_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/groups/{c.seed.group()}/members", {"users": [_user(c)]}),
    ),
    ("DELETE", "/v1/tenants/{t}/groups/{id}/members/{member_id}"): (
        DIRECTORY_WRITE,
        lambda c: (
            lambda u: Req("DELETE", f"/v1/tenants/{c.t}/groups/{c.seed.group(users=[u])}/members/{u}")
        )(_user(c)),
    ),
    ("GET", "/v1/tenants/{t}/directory/search"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/directory/search?q=user"),
    ),
    # audit
    ("GET", "/v1/tenants/{t}/audit"): (READ, lambda c: Req("GET", f"/v1/tenants/{c.t}/audit")),
    # tokens
    ("GET", "/v1/tenants/{t}/tokens"): (TOKENS, lambda c: Req("GET", f"/v1/tenants/{c.t}/tokens")),
    ("POST", "/v1/tenants/{t}/tokens"): (
        TOKENS,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/tokens", {"role": "reader", "name": "ci"}, 201),
    ),
    ("DELETE", "/v1/tenants/{t}/tokens/{id}"): (
        TOKENS,
        lambda c: Req("DELETE", f"/v1/tenants/{c.t}/tokens/{_token_id(c)}", ok=204),
    ),
    # outgoing webhooks (issue 7): a tenant's endpoints are "everything in the tenant" to write; readers
    # read them and their delivery logs (no secret is ever listed); global endpoints are the operator's
    ("GET", "/v1/tenants/{t}/webhooks"): (READ, lambda c: Req("GET", f"/v1/tenants/{c.t}/webhooks")),
    ("POST", "/v1/tenants/{t}/webhooks"): (
        TENANT_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/webhooks", {"url": HOOK}, 201),
    ),
    ("GET", "/v1/tenants/{t}/webhooks/{id}"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/webhooks/{_endpoint(c)}"),
    ),
    ("PATCH", "/v1/tenants/{t}/webhooks/{id}"): (
        TENANT_WRITE,
        lambda c: Req("PATCH", f"/v1/tenants/{c.t}/webhooks/{_endpoint(c)}", {"description": "x"}),
    ),
    ("DELETE", "/v1/tenants/{t}/webhooks/{id}"): (
        TENANT_WRITE,
        lambda c: Req("DELETE", f"/v1/tenants/{c.t}/webhooks/{_endpoint(c)}", ok=204),
    ),
    ("POST", "/v1/tenants/{t}/webhooks/{id}/rotate-secret"): (
        TENANT_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/webhooks/{_endpoint(c)}/rotate-secret"),
    ),
    ("GET", "/v1/tenants/{t}/webhooks/{id}/deliveries"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/webhooks/{_endpoint(c)}/deliveries"),
    ),
    ("POST", "/v1/tenants/{t}/webhooks/{id}/deliveries/{delivery_id}/redeliver"): (
        TENANT_WRITE,
        lambda c: (
            lambda e, d: Req("POST", f"/v1/tenants/{c.t}/webhooks/{e}/deliveries/{d}/redeliver", ok=202)
        )(*_delivery(c)),
    ),
    ("GET", "/v1/webhooks"): (OP, lambda c: Req("GET", "/v1/webhooks")),
    ("POST", "/v1/webhooks"): (OP, lambda c: Req("POST", "/v1/webhooks", {"url": HOOK}, 201)),
    ("GET", "/v1/webhooks/{id}"): (OP, lambda c: Req("GET", f"/v1/webhooks/{_endpoint(c, tenant=False)}")),
    ("PATCH", "/v1/webhooks/{id}"): (
        OP,
        lambda c: Req("PATCH", f"/v1/webhooks/{_endpoint(c, tenant=False)}", {"enabled": False}),
    ),
    ("DELETE", "/v1/webhooks/{id}"): (
        OP,
        lambda c: Req("DELETE", f"/v1/webhooks/{_endpoint(c, tenant=False)}", ok=204),
    ),
    ("POST", "/v1/webhooks/{id}/rotate-secret"): (
        OP,
        lambda c: Req("POST", f"/v1/webhooks/{_endpoint(c, tenant=False)}/rotate-secret"),
    ),
    ("GET", "/v1/webhooks/{id}/deliveries"): (
        OP,
        lambda c: Req("GET", f"/v1/webhooks/{_endpoint(c, tenant=False)}/deliveries"),
    ),
    ("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver"): (
        OP,
        lambda c: (lambda e, d: Req("POST", f"/v1/webhooks/{e}/deliveries/{d}/redeliver", ok=202))(
            *_delivery(c, tenant=False)
        ),
    ),
    # reclaiming idle seats (issue 7): the policy and running it are the global admin's; the dry run reads
    ("GET", "/v1/tenants/{t}/reclaim/policy"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/reclaim/policy"),
    ),
    ("PUT", "/v1/tenants/{t}/reclaim/policy"): (
        TENANT_WRITE,
        lambda c: Req("PUT", f"/v1/tenants/{c.t}/reclaim/policy", {"enabled": False, "idleDays": 60}),
    ),
    ("GET", "/v1/tenants/{t}/reclaim/preview"): (
        READ,
        lambda c: Req("GET", f"/v1/tenants/{c.t}/reclaim/preview"),
    ),
    ("POST", "/v1/tenants/{t}/reclaim/run"): (
        TENANT_WRITE,
        lambda c: Req("POST", f"/v1/tenants/{c.t}/reclaim/run"),
    ),
    # the vendor's batch check (SPEC section 3): "with an operator or tenant token"; it reads licenses
    ("POST", "/v1/licensing/{productId}/check"): (
        READ,
        lambda c: Req(
            "POST",
            f"/v1/licensing/{PRODUCT}/check",
            {"tenant": c.t, "users": [c.seed.user()["upn"]]},
        ),
    ),
    # SCIM (SPEC section 4): "the tenant's SCIM endpoint only", and only the scim role; one catch-all
    # route per method, exercised on /Users. Its refusals are SCIM error documents (RFC 7644 3.12).
    ("GET", "/scim/v2/{t}/{path}"): (SCIM, lambda c: Req("GET", f"/scim/v2/{c.t}/Users")),
    ("POST", "/scim/v2/{t}/{path}"): (
        SCIM,
        lambda c: Req("POST", f"/scim/v2/{c.t}/Users", {"schemas": [SCIM_USER], "userName": _new_upn()}, 201),
    ),
    ("PUT", "/scim/v2/{t}/{path}"): (
        SCIM,
        lambda c: _scim_put(c, c.seed.user()),
    ),
    ("PATCH", "/scim/v2/{t}/{path}"): (
        SCIM,
        lambda c: Req(
            "PATCH",
            f"/scim/v2/{c.t}/Users/{_user(c)}",
            {"schemas": [SCIM_PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "X"}]},
            204,
        ),
    ),
    ("DELETE", "/scim/v2/{t}/{path}"): (
        SCIM,
        lambda c: Req("DELETE", f"/scim/v2/{c.t}/Users/{_user(c)}", ok=204),
    ),
}

# Routes outside the bearer-role model, by design (their own authentication, SPEC sections 3-6).
OTHER_AUTH = {
    ("POST", "/v1/marketplace/events"),  # signed with the marketplace secret
    ("GET", "/v1/licensing/{productId}/servicePlans"),  # end-user access tokens
    ("GET", "/v1/licensing/{productId}/license"),  # end-user access tokens
    ("GET", "/.well-known/jwks.json"),  # public keys
    ("GET", "/dev-issuer/{t}/.well-known/openid-configuration"),  # the dev issuer (SPEC section 3): public
    ("GET", "/dev-issuer/{t}/.well-known/jwks.json"),
    ("GET", "/demo/visual"),  # the demo page, public
    # the admin portal: signed session cookies, the same PERMISSIONS per page (tests/web/)
    ("GET", "/admin/static/admin.css"),
    ("GET", "/admin/static/htmx-2.0.11.min.js"),
    ("GET", "/admin/"),
    ("GET", "/admin"),
    ("GET", "/admin/sign-in"),
    ("POST", "/admin/sign-in"),
    ("GET", "/admin/sign-in/link"),
    ("POST", "/admin/sign-in/link"),
    ("GET", "/admin/sign-in/oidc"),
    ("GET", "/admin/sign-in/oidc/callback"),
    ("POST", "/admin/sign-out"),
    ("GET", "/admin/licenses"),
    ("GET", "/admin/licenses/{plan}"),
    ("GET", "/admin/licenses/{plan}/counts"),
    ("POST", "/admin/licenses/{plan}/unassign"),
    ("GET", "/admin/licenses/{plan}/groups/{group_id}/state"),
    ("POST", "/admin/licenses/{plan}/groups/{group_id}/reprocess"),
    ("GET", "/admin/licenses/{plan}/reassign"),
    ("POST", "/admin/licenses/{plan}/reassign"),
    ("POST", "/admin/licenses/{plan}/subscriptions/{subscription_id}"),
    ("POST", "/admin/licenses/{plan}/assign"),
    ("GET", "/admin/licenses/{plan}/assign"),
    ("GET", "/admin/users"),
    ("GET", "/admin/users/{user}"),
    ("GET", "/admin/groups"),
    ("GET", "/admin/groups/{group_id}"),
    ("GET", "/admin/audit"),
    ("GET", "/admin/audit.csv"),
}
NOT_IN_MATRIX = {
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/metrics"),
    ("GET", "/v1/health"),
    ("GET", "/v1/ready"),
}


def is_served(api: Any, key: tuple[str, str]) -> bool:
    return shape(key) in {shape(r) for r in served_routes(api.client.app)}


def _served_or_skip(api: Any, key: tuple[str, str]) -> None:
    if not is_served(api, key):
        pytest.skip(f"{key[0]} {key[1]} is not served (yet)")


@pytest.fixture
def world(api):
    """Seats in both tenants, so that every allowed call can succeed."""
    contoso, fabrikam = Seed(api, api.tenant), Seed(api, api.other_tenant, domain="fabrikam.com")
    contoso.buy(10_000)
    fabrikam.buy(10_000)
    return contoso, fabrikam


def _send(client: Any, req: Req, headers: dict[str, str]) -> Any:
    return client.request(req.method, req.path, json=req.json, headers=headers)


# ---------------------------------------------------------------- coverage of the table


def test_every_route_of_the_app_has_a_role_expectation(api):
    served = served_routes(api.client.app)
    assert len(served) > 30, "the route enumeration found almost nothing"
    known = {shape(k) for k in (*TABLE, *OTHER_AUTH, *NOT_IN_MATRIX)}
    missing = sorted(r for r in served if shape(r) not in known)
    scim = [r for r in missing if r[1].startswith("/scim/")]
    assert not missing, (
        f"routes without a row in the role table (SCIM: {len(scim)}): {missing}; add them to TABLE or "
        "OTHER_AUTH with the SPEC's answer"
    )


# ---------------------------------------------------------------- the matrix


@pytest.mark.parametrize("key", sorted(TABLE), ids=lambda k: f"{k[0]} {k[1]}")
def test_role_matrix_allows_exactly_the_roles_of_the_spec(api, world, key):
    _served_or_skip(api, key)
    allowed, build = TABLE[key]
    client = lenient(api)
    c = Ctx(api.tenant, world[0])
    wrong = []
    for role in ROLES:
        req = build(c)
        r = _send(client, req, bearer(api.tokens[role]))
        if role in allowed:
            if r.status_code != req.ok:
                wrong.append(f"{role}: expected {req.ok} (allowed), got {r.status_code} {r.text[:200]}")
        elif r.status_code != 403:
            wrong.append(f"{role}: expected 403, got {r.status_code} {r.text[:200]}")
        else:
            assert_refusal(r, 403, "forbidden")
    assert not wrong, f"{key[0]} {key[1]}:\n" + "\n".join(wrong)


def test_a_refused_role_changes_nothing(api, world):
    """403 is decided before anything is written: every refused call of the matrix leaves no trace."""
    client = lenient(api)
    c = Ctx(api.tenant, world[0])
    requests = []
    for key, (allowed, build) in sorted(TABLE.items()):
        if key[0] == "GET" or not is_served(api, key):
            continue
        for role in ROLES:
            if role not in allowed:
                requests.append((role, build(c)))
    unchanged = Unchanged(api)
    for role, req in requests:
        r = _send(client, req, bearer(api.tokens[role]))
        assert r.status_code == 403, f"{role} {req.method} {req.path}: {r.status_code} {r.text[:200]}"
    unchanged.check("refused writes")


# ---------------------------------------------------------------- tenant isolation

TENANT_SCOPED = sorted(k for k in TABLE if "{t}" in k[1] or k[1].startswith("/v1/licensing/"))


@pytest.mark.parametrize("key", TENANT_SCOPED, ids=lambda k: f"{k[0]} {k[1]}")
def test_another_tenants_token_gets_404_never_403(api, world, key):
    """Every role of fabrikam against contoso's paths (by id and by slug) and objects: 404, and nothing
    changes in contoso."""
    _served_or_skip(api, key)
    _allowed, build = TABLE[key]
    client = lenient(api)
    c = Ctx(api.tenant, world[0])
    requests = []
    for role in TENANT_ROLES:
        for ref in (api.tenant, "contoso"):
            req = build(c)
            req.path = req.path.replace(f"/tenants/{api.tenant}", f"/tenants/{ref}")
            req.path = req.path.replace(f"/scim/v2/{api.tenant}/", f"/scim/v2/{ref}/")
            if isinstance(req.json, dict) and "tenant" in req.json:
                req.json = {**req.json, "tenant": ref}
            requests.append((role, ref, req))
    unchanged = Unchanged(api)
    wrong = []
    for role, ref, req in requests:
        r = _send(client, req, bearer(api.other_tokens[role]))
        if r.status_code != 404:
            wrong.append(f"fabrikam {role} on {ref}: expected 404, got {r.status_code} {r.text[:200]}")
        else:
            assert_refusal(r, 404, "not_found")
            assert "forbidden" not in r.text
    assert not wrong, f"{key[0]} {key[1]}:\n" + "\n".join(wrong)
    unchanged.check(f"{key[0]} {key[1]} with fabrikam tokens")


_NAMES_OBJECTS_IN_BODY = {
    ("POST", "/v1/tenants/{t}/licenses/{plan}/assign"),
    ("POST", "/v1/tenants/{t}/licenses/{plan}/unassign"),
    ("POST", "/v1/tenants/{t}/licenses/{plan}/reassign"),
}
FOREIGN_REFS = sorted(
    k
    for k in TENANT_SCOPED
    if k in _NAMES_OBJECTS_IN_BODY or any(p in k[1] for p in ("{id}", "{user}", "{member_id}"))
)


def test_a_tenants_own_admin_naming_another_tenants_objects_gets_404(api, world):
    """fabrikam's global_admin, on fabrikam's own paths, naming contoso's users, groups, subscriptions,
    tokens (in the path or the body): 404 on every such route, and contoso is untouched."""
    client = lenient(api)
    requests = []
    for key in FOREIGN_REFS:
        if not is_served(api, key):
            continue
        req = TABLE[key][1](Ctx(api.tenant, world[0]))
        req.path = req.path.replace(f"/tenants/{api.tenant}", f"/tenants/{api.other_tenant}")
        requests.append((key, req))
    assert len(requests) >= 15
    unchanged = Unchanged(api)
    wrong = []
    for key, req in requests:
        r = _send(client, req, bearer(api.other_tokens["global_admin"]))
        if r.status_code != 404 or r.json().get("code") != "not_found":
            wrong.append(f"{key[0]} {key[1]}: expected 404 not_found, got {r.status_code} {r.text[:200]}")
        else:
            assert_problem(r, 404, "not_found")
    assert not wrong, "\n".join(wrong)
    unchanged.check("fabrikam naming contoso's objects")


def test_the_batch_check_of_one_tenant_knows_nothing_of_another_tenants_users(api, world):
    """fabrikam's check naming contoso's licensed user (by UPN and by externalId) answers as for an
    unknown user of fabrikam: no plans (SPEC section 3), nothing of contoso's."""
    _served_or_skip(api, ("POST", "/v1/licensing/{productId}/check"))
    contoso = world[0]
    user = contoso.user(external_id="oid-contoso-1")
    contoso.assign(users=[user["id"]])
    own = api.post(
        f"/v1/licensing/{PRODUCT}/check", {"tenant": api.tenant, "users": [user["upn"]]}, role="reader"
    )
    assert own.status_code == 200 and own.json()["results"][0]["plans"] != []
    for role in ("global_admin", "reader"):
        r = api.post(
            f"/v1/licensing/{PRODUCT}/check",
            {"tenant": api.other_tenant, "users": [user["upn"], "oid-contoso-1", user["id"]]},
            role=role,
            other=True,
        )
        assert r.status_code == 200, r.text
        assert [res["plans"] for res in r.json()["results"]] == [[], [], []]


def test_a_tenant_admin_cannot_see_another_tenant_through_the_tenant_list(api):
    operator = bearer(api.tokens["operator"])
    r = api.client.patch(
        f"/v1/tenants/{api.other_tenant}", json={"externalTenantId": "fab-tid"}, headers=operator
    )
    assert r.status_code == 200
    for role in ("global_admin", "license_admin", "billing_admin", "reader"):
        found = api.get("/v1/tenants?externalTenantId=fab-tid", role)
        assert found.status_code == 200 and found.json()["items"] == [], role
        listed = api.get("/v1/tenants", role)
        assert [t["id"] for t in listed.json()["items"]] == [api.tenant], role
    assert api.client.get("/v1/tenants?externalTenantId=fab-tid", headers=operator).json()["items"][0][
        "id"
    ] == (api.other_tenant)


def test_the_operator_reaches_every_tenant(api, world):
    for t in (api.tenant, api.other_tenant, "contoso", "fabrikam"):
        assert api.get(f"/v1/tenants/{t}/users", "operator").status_code == 200


# ---------------------------------------------------------------- no or bad credentials

GARBAGE = {
    "no header": None,
    "empty bearer": "Bearer ",
    "opaque garbage": "Bearer not-a-token",
    "ld_ garbage": "Bearer ld_garbage",
    "jwt-looking garbage": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
    "basic auth": "Basic dXNlcjpwYXNz",
    "scheme only": "Bearer",
    "very long": "Bearer ld_" + "a" * 5000,
}


def test_missing_or_garbage_credentials_get_401_with_a_challenge(api, world):
    """Every route, with no token or a bad one: 401, a WWW-Authenticate: Bearer challenge, a problem
    document, and nothing changed."""
    client = lenient(api)
    ga = api.tokens["global_admin"]
    tampered = ga[:-2] + ("AA" if not ga.endswith("AA") else "BB")
    cases = {**GARBAGE, "tampered token": f"Bearer {tampered}"}
    requests = [
        (key, TABLE[key][1](Ctx(api.tenant, world[0]))) for key in sorted(TABLE) if is_served(api, key)
    ]
    unchanged = Unchanged(api)
    wrong = []
    for key, req in requests:
        for name, value in cases.items():
            headers = {"Authorization": value} if value is not None else {}
            r = _send(client, req, headers)
            where = f"{key[0]} {key[1]} [{name}]"
            if r.status_code != 401:
                wrong.append(f"{where}: expected 401, got {r.status_code} {r.text[:200]}")
                continue
            assert_refusal(r, 401, "unauthenticated")
            challenge = r.headers.get("www-authenticate", "")
            if not challenge.lower().startswith("bearer"):
                wrong.append(f"{where}: WWW-Authenticate is {challenge!r}")
    assert not wrong, "\n".join(wrong)
    unchanged.check("unauthenticated calls")


def test_marketplace_events_take_no_bearer_token_of_any_role(api, world):
    """SPEC section 5: the marketplace endpoint is authenticated by its signature; a bearer token of any
    role, even the operator's, is not a signature (401) and changes nothing."""
    _served_or_skip(api, ("POST", "/v1/marketplace/events"))
    body = {
        "id": "evt-1",
        "subscriptionId": "sub-1",
        "planId": PLAN,
        "quantity": 5,
        "action": "Subscribe",
        "timeStamp": "2026-01-01T12:00:00Z",
        "beneficiary": {"tenantId": "tid-new", "emailId": "buyer@new.example", "objectId": "oid-1"},
    }
    unchanged = Unchanged(api)
    for role in ROLES:
        r = lenient(api).post("/v1/marketplace/events", json=body, headers=bearer(api.tokens[role]))
        assert r.status_code == 401, (role, r.status_code, r.text[:200])
    unchanged.check("unsigned marketplace events")
