"""Issue 8, abuse: every collection caps its page size (SPEC section 2: `?limit=`, default 100, max 1000).

Table-driven over every list route of the API: the table must name every GET route of the OpenAPI that
pages (takes `limit` or `cursor`), so a new collection cannot be added without a row here. For each,
a limit above the cap, below 1 or absurdly large is a 422 `validation_error` problem document (a
well-formed request with an invalid value), one that is not a whole number a 400 `invalid_request`; the
cap itself is served.
The other lists of the service: SCIM (`count`, RFC 7644: clamped to the announced maximum, 1000), the
admin portal (a fixed page of 50, it takes no size from the request) and the audit CSV export (streamed
page by page, so it needs no cap) are covered in tests/scim and tests/web.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from licensedesk.directory import service as directory
from licensedesk.pagination import MAX_LIMIT
from licensedesk.webhooks import service as webhooks
from tests.api.support import assert_problem
from tests.world import PLAN

HOOK = "https://vendor.example/hooks/licensedesk"


def _group(api: Any) -> str:
    return directory.create_group(api.ctx, api.tenant, "Capped").id


def _endpoint(api: Any, tenant: bool) -> str:
    return webhooks.create_endpoint(api.ctx, api.tenant if tenant else None, HOOK)[0].id


# path template -> the path with real ids (made by the function, on the api fixture)
ROUTES: dict[str, Callable[[Any], str]] = {
    "/v1/tenants": lambda api: "/v1/tenants",
    "/v1/tenants/{t}/subscriptions": lambda api: "/v1/tenants/contoso/subscriptions",
    "/v1/tenants/{t}/licenses/{plan}/users": lambda api: f"/v1/tenants/contoso/licenses/{PLAN}/users",
    "/v1/tenants/{t}/licenses/{plan}/groups": lambda api: f"/v1/tenants/contoso/licenses/{PLAN}/groups",
    "/v1/tenants/{t}/users": lambda api: "/v1/tenants/contoso/users",
    "/v1/tenants/{t}/groups": lambda api: "/v1/tenants/contoso/groups",
    "/v1/tenants/{t}/groups/{id}/members": lambda api: f"/v1/tenants/contoso/groups/{_group(api)}/members",
    "/v1/tenants/{t}/directory/search": lambda api: "/v1/tenants/contoso/directory/search?q=a",
    "/v1/tenants/{t}/audit": lambda api: "/v1/tenants/contoso/audit",
    "/v1/tenants/{t}/tokens": lambda api: "/v1/tenants/contoso/tokens",
    "/v1/tenants/{t}/webhooks": lambda api: "/v1/tenants/contoso/webhooks",
    "/v1/tenants/{t}/webhooks/{id}/deliveries": (
        lambda api: f"/v1/tenants/contoso/webhooks/{_endpoint(api, True)}/deliveries"
    ),
    "/v1/webhooks": lambda api: "/v1/webhooks",
    "/v1/webhooks/{id}/deliveries": lambda api: f"/v1/webhooks/{_endpoint(api, False)}/deliveries",
    "/v1/tenants/{t}/reclaim/preview": lambda api: "/v1/tenants/contoso/reclaim/preview?idleDays=30",
}

# limit -> (status, code): out of range is an invalid value (422), not a number a malformed request (400)
REFUSED = {
    str(MAX_LIMIT + 1): (422, "validation_error"),
    "100000": (422, "validation_error"),
    str(10**30): (422, "validation_error"),
    "0": (422, "validation_error"),
    "-1": (422, "validation_error"),
    "abc": (400, "invalid_request"),
    "1.5": (400, "invalid_request"),
}


def test_the_table_names_every_route_that_pages(api):
    spec = api.client.get("/openapi.json").json()
    paged = {
        path
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if method == "get"
        and {p["name"] for p in op.get("parameters", []) if p["in"] == "query"} & {"limit", "cursor"}
    }
    assert paged == set(ROUTES)
    for path in paged:
        [limit] = [p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == "limit"]
        bounds = [s for s in limit["schema"]["anyOf"] if s.get("type") == "integer"]
        assert bounds == [{"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}], (path, limit)


def _with(path: str, limit: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}limit={limit}"


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_collection_refuses_a_page_above_the_cap_and_serves_the_cap(api, route):
    path = ROUTES[route](api)
    for limit, (status, code) in REFUSED.items():
        body = assert_problem(api.get(_with(path, limit), "operator"), status, code)
        assert [e["field"] for e in body["errors"]] == ["query.limit"], (route, limit, body)
    r = api.get(_with(path, str(MAX_LIMIT)), "operator")
    assert r.status_code == 200, (route, r.text)
    assert set(r.json()) >= {"items", "nextCursor"} and len(r.json()["items"]) <= MAX_LIMIT


def test_a_page_is_never_longer_than_the_limit_asked(api):
    for i in range(12):
        directory.create_user(api.ctx, api.tenant, f"cap{i:02d}@contoso.com", f"Cap {i}")
    for limit in (1, 5, 11):
        body = api.get(f"/v1/tenants/contoso/users?limit={limit}", "operator").json()
        assert len(body["items"]) == limit and body["nextCursor"]
