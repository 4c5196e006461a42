"""Every endpoint and every error code of SPEC section 2, through HTTP: statuses, shapes and field names
(camelCase, exactly as the SPEC names them), problem documents, request ids, audit, tokens, group
processing, operations endpoints and the OpenAPI document."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest

from tests.api.support import (
    BASIC,
    PLAN,
    PRODUCT,
    Seed,
    Unchanged,
    assert_problem,
    bearer,
    lenient,
    served_routes,
)

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.fixture
def seed(api) -> Seed:
    return Seed(api, api.tenant)


def T(api: Any) -> str:
    return f"/v1/tenants/{api.tenant}"


def has_keys(obj: dict[str, Any], *names: str) -> None:
    missing = [n for n in names if n not in obj]
    assert not missing, f"missing {missing} in {sorted(obj)}"


def exact_keys(obj: dict[str, Any], *names: str) -> None:
    assert set(obj) == set(names), f"keys {sorted(obj)} != {sorted(names)}"


def no_snake_case(value: Any, where: str = "") -> None:
    """Every field name on the wire is camelCase (SPEC section 2)."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert "_" not in k, f"snake_case field {where}.{k}"
            no_snake_case(v, f"{where}.{k}")
    elif isinstance(value, list):
        for v in value:
            no_snake_case(v, where)


def page_items(r: Any) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    body = r.json()
    exact_keys(body, "items", "nextCursor")
    no_snake_case(body)
    return body["items"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- the SPEC's endpoint list

SPEC_ENDPOINTS = [
    ("GET", "/v1/health"),
    ("GET", "/v1/ready"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants"),
    ("GET", "/v1/tenants/{t}"),
    ("PATCH", "/v1/tenants/{t}"),
    ("GET", "/v1/products"),
    ("POST", "/v1/products"),
    ("POST", "/v1/products/{p}/plans"),
    ("GET", "/v1/plans"),
    ("GET", "/v1/tenants/{t}/subscriptions"),
    ("POST", "/v1/tenants/{t}/subscriptions"),
    ("GET", "/v1/tenants/{t}/subscriptions/{id}"),
    ("PATCH", "/v1/tenants/{t}/subscriptions/{id}"),
    ("GET", "/v1/tenants/{t}/licenses"),
    ("GET", "/v1/tenants/{t}/licenses/{plan}"),
    ("GET", "/v1/tenants/{t}/licenses/{plan}/users"),
    ("GET", "/v1/tenants/{t}/licenses/{plan}/groups"),
    ("POST", "/v1/tenants/{t}/licenses/{plan}/assign"),
    ("POST", "/v1/tenants/{t}/licenses/{plan}/unassign"),
    ("POST", "/v1/tenants/{t}/licenses/{plan}/reassign"),
    ("GET", "/v1/tenants/{t}/users"),
    ("POST", "/v1/tenants/{t}/users"),
    ("GET", "/v1/tenants/{t}/users/{user}"),
    ("PATCH", "/v1/tenants/{t}/users/{user}"),
    ("DELETE", "/v1/tenants/{t}/users/{user}"),
    ("GET", "/v1/tenants/{t}/users/{user}/licenses"),
    ("GET", "/v1/tenants/{t}/groups"),
    ("POST", "/v1/tenants/{t}/groups"),
    ("GET", "/v1/tenants/{t}/groups/{id}"),
    ("PATCH", "/v1/tenants/{t}/groups/{id}"),
    ("DELETE", "/v1/tenants/{t}/groups/{id}"),
    ("GET", "/v1/tenants/{t}/groups/{id}/members"),
    ("POST", "/v1/tenants/{t}/groups/{id}/members"),
    ("DELETE", "/v1/tenants/{t}/groups/{id}/members/{memberId}"),
    ("GET", "/v1/tenants/{t}/groups/{id}/licenses"),
    ("GET", "/v1/tenants/{t}/directory/search"),
    ("POST", "/v1/tenants/{t}/users/{user}/reprocess"),
    ("POST", "/v1/tenants/{t}/groups/{id}/reprocess"),
    ("GET", "/v1/tenants/{t}/audit"),
    ("GET", "/v1/tenants/{t}/tokens"),
    ("POST", "/v1/tenants/{t}/tokens"),
    ("DELETE", "/v1/tenants/{t}/tokens/{id}"),
    ("POST", "/v1/marketplace/events"),
    ("GET", "/metrics"),
]


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_endpoint_of_spec_section_2_is_served(api):
    served = {(m, _shape(p)) for m, p in served_routes(api.client.app)}
    missing = [f"{m} {p}" for m, p in SPEC_ENDPOINTS if (m, _shape(p)) not in served]
    assert not missing, f"SPEC section 2 endpoints not served: {missing}"


# ---------------------------------------------------------------- operations


def test_health_is_alive_without_a_token(api):
    r = api.client.get("/v1/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.headers.get("x-request-id")


def test_ready_says_the_database_is_reachable_and_current(api):
    r = api.client.get("/v1/ready")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "database": "ok"}


def test_metrics_count_requests_and_show_the_job_queue_depth(api, seed):
    seed.buy(10)
    group = seed.group(users=[seed.user()["id"]])
    assert api.post(f"{T(api)}/licenses/{PLAN}/assign", {"groups": [group]}).status_code == 202
    api.get(f"{T(api)}/users")
    text = api.client.get("/metrics").text
    assert "licensedesk_http_requests_total" in text
    assert re.search(
        r'licensedesk_http_requests_total\{[^}]*route="/v1/tenants/\{t\}/users"[^}]*\} [1-9]', text
    )
    depth = re.search(r"^licensedesk_job_queue_depth (\S+)$", text, re.M)
    assert depth and float(depth.group(1)) >= 1
    api.drain()
    depth = re.search(r"^licensedesk_job_queue_depth (\S+)$", api.client.get("/metrics").text, re.M)
    assert depth and float(depth.group(1)) == 0


# ---------------------------------------------------------------- request ids


def test_every_answer_carries_an_x_request_id(api, seed):
    client = lenient(api)
    answers = [
        client.get("/v1/health"),
        client.get(f"{T(api)}/users", headers=bearer(api.tokens["global_admin"])),  # 200
        client.get(f"{T(api)}/users"),  # 401
        client.get(f"{T(api)}/tokens", headers=bearer(api.tokens["reader"])),  # 403
        client.get(f"{T(api)}/users/nobody@contoso.com", headers=bearer(api.tokens["reader"])),  # 404
        client.get("/v1/no-such-route"),  # 404 unmatched
        client.put(f"{T(api)}/users", headers=bearer(api.tokens["reader"])),  # 405
        client.post(
            f"{T(api)}/users",
            content=b"{",
            headers={**bearer(api.tokens["global_admin"]), "Content-Type": "application/json"},
        ),  # 400
        client.post(
            f"{T(api)}/users",
            content=b"x" * (1024 * 1024 + 1),
            headers={**bearer(api.tokens["global_admin"]), "Content-Type": "application/json"},
        ),  # 413
        client.get("/metrics"),
        client.get("/openapi.json"),
    ]
    ids = [r.headers.get("x-request-id") for r in answers]
    assert all(ids), [
        (r.request.url.path, r.status_code) for r in answers if not r.headers.get("x-request-id")
    ]
    assert len(set(ids)) == len(ids), "request ids are not unique"


def test_a_sane_request_id_is_echoed_and_an_insane_one_replaced(api):
    sane = "req-2026.01:abc_DEF-123"
    r = api.get(f"{T(api)}/users", headers={"X-Request-Id": sane})
    assert r.headers["x-request-id"] == sane
    for insane in ("x" * 129, "has space", "semi;colon", "new\\nline"):
        r = api.get(f"{T(api)}/users", headers={"X-Request-Id": insane})
        assert r.status_code == 200
        assert r.headers["x-request-id"] not in ("", insane)


def test_audit_events_carry_the_request_id_of_the_change(api, seed):
    r = api.post(
        f"{T(api)}/users", {"userPrincipalName": "rid@contoso.com"}, headers={"X-Request-Id": "change-42"}
    )
    assert r.status_code == 201 and r.headers["x-request-id"] == "change-42"
    events = page_items(api.get(f"{T(api)}/audit?targetId={r.json()['id']}"))
    assert [e["requestId"] for e in events] == ["change-42"]
    # a generated id is recorded the same way
    r = api.post(f"{T(api)}/groups", {"displayName": "Rid Group"})
    events = page_items(api.get(f"{T(api)}/audit?targetId={r.json()['id']}"))
    assert events[0]["requestId"] == r.headers["x-request-id"]


# ---------------------------------------------------------------- tenants


TENANT_FIELDS = ("id", "slug", "name", "externalTenantId", "issuer", "jwksUri", "createdAt")


def test_operator_creates_lists_finds_gets_and_patches_tenants(api):
    r = api.post(
        "/v1/tenants",
        {
            "slug": "northwind",
            "name": "Northwind",
            "externalTenantId": "nw-tid",
            "issuer": "https://login.example/nw/v2.0",
            "jwksUri": "https://login.example/nw/keys",
        },
        role="operator",
    )
    assert r.status_code == 201, r.text
    tenant = r.json()
    exact_keys(tenant, *TENANT_FIELDS)
    assert (tenant["slug"], tenant["name"], tenant["externalTenantId"]) == (
        "northwind",
        "Northwind",
        "nw-tid",
    )
    assert ISO_Z.match(tenant["createdAt"])

    listed = page_items(api.get("/v1/tenants", "operator"))
    assert {"contoso", "fabrikam", "northwind"} <= {t["slug"] for t in listed}
    found = page_items(api.get("/v1/tenants?externalTenantId=nw-tid", "operator"))
    assert [t["id"] for t in found] == [tenant["id"]]
    assert page_items(api.get("/v1/tenants?externalTenantId=nope", "operator")) == []

    by_slug = api.get("/v1/tenants/northwind", "operator").json()
    by_id = api.get(f"/v1/tenants/{tenant['id']}", "operator").json()
    assert by_slug == by_id == tenant

    patched = api.patch(f"/v1/tenants/{tenant['id']}", {"name": "Northwind Traders"}, role="operator")
    assert patched.status_code == 200 and patched.json()["name"] == "Northwind Traders"
    assert patched.json()["slug"] == "northwind"


def test_tenant_admins_get_and_patch_their_own_tenant(api):
    r = api.get(T(api), "reader")
    assert r.status_code == 200 and r.json()["id"] == api.tenant and r.json()["slug"] == "contoso"
    r = api.patch(T(api), {"name": "Contoso Ltd"}, role="global_admin")
    assert r.status_code == 200 and r.json()["name"] == "Contoso Ltd"
    [event] = page_items(api.get(f"{T(api)}/audit?action=tenant.updated"))
    assert event["target"]["id"] == api.tenant


def test_duplicate_tenants_are_409(api):
    r = api.post("/v1/tenants", {"slug": "contoso", "name": "Again"}, role="operator")
    assert_problem(r, 409, "duplicate")
    api.patch(T(api), {"externalTenantId": "c-tid"}, role="operator")
    r = api.post(
        "/v1/tenants", {"slug": "other", "name": "Other", "externalTenantId": "c-tid"}, role="operator"
    )
    assert_problem(r, 409, "duplicate")
    r = api.patch(f"/v1/tenants/{api.other_tenant}", {"externalTenantId": "c-tid"}, role="operator")
    assert_problem(r, 409, "duplicate")


def test_unknown_tenant_is_404(api):
    assert_problem(api.get("/v1/tenants/nope", "operator"), 404, "not_found")
    assert_problem(
        api.get("/v1/tenants/00000000-0000-0000-0000-000000000000/users", "operator"), 404, "not_found"
    )


# ---------------------------------------------------------------- catalog


def test_catalog_lists_products_and_plans_with_spec_fields(api):
    products = page_items(api.get("/v1/products", "reader"))
    [product] = [p for p in products if p["id"] == PRODUCT]
    has_keys(product, "id", "name", "audience")
    assert product["audience"] == "api://innofalls-charts"
    plans = page_items(api.get(f"/v1/plans?productId={PRODUCT}", "reader"))
    assert {p["id"] for p in plans} == {PLAN, BASIC}
    [pro] = [p for p in plans if p["id"] == PLAN]
    has_keys(pro, "id", "productId", "name", "spIdentifier", "trialDays")
    assert (pro["productId"], pro["spIdentifier"], pro["trialDays"]) == (PRODUCT, "innofalls.charts.pro", 30)


def test_operator_creates_products_and_plans_and_duplicates_are_409(api):
    r = api.post("/v1/products", {"id": "gizmo", "name": "Gizmo", "audience": "api://gizmo"}, role="operator")
    assert r.status_code == 201, r.text
    has_keys(r.json(), "id", "name", "audience")
    r = api.post(
        "/v1/products/gizmo/plans",
        {"id": "gizmo-std", "name": "Standard", "spIdentifier": "gizmo.std", "trialDays": 14},
        role="operator",
    )
    assert r.status_code == 201, r.text
    plan = r.json()
    has_keys(plan, "id", "productId", "name", "spIdentifier", "trialDays")
    assert (plan["id"], plan["productId"], plan["trialDays"]) == ("gizmo-std", "gizmo", 14)
    assert "gizmo-std" in {p["id"] for p in page_items(api.get("/v1/plans", "operator"))}

    dup_id = api.post("/v1/products", {"id": "gizmo", "name": "G", "audience": "api://g2"}, role="operator")
    assert_problem(dup_id, 409, "duplicate")
    dup_aud = api.post(
        "/v1/products", {"id": "gizmo2", "name": "G", "audience": "api://gizmo"}, role="operator"
    )
    assert_problem(dup_aud, 409, "duplicate")
    dup_plan = api.post(
        "/v1/products/gizmo/plans",
        {"id": "gizmo-std", "name": "S", "spIdentifier": "other.sp"},
        role="operator",
    )
    assert_problem(dup_plan, 409, "duplicate")
    unknown = api.post(
        "/v1/products/nope/plans", {"id": "x1", "name": "X", "spIdentifier": "x.1"}, role="operator"
    )
    assert_problem(unknown, 404, "not_found")


# ---------------------------------------------------------------- subscriptions

SUBSCRIPTION_FIELDS = (
    "id",
    "planId",
    "quantity",
    "status",
    "trial",
    "trialEndsAt",
    "termEndsAt",
    "autoRenew",
    "source",
    "externalId",
    "createdAt",
)


def test_subscriptions_create_list_get_patch(api):
    r = api.post(
        f"{T(api)}/subscriptions",
        {"planId": PLAN, "quantity": 5, "autoRenew": True, "termEndsAt": "2027-01-01T00:00:00Z"},
        role="billing_admin",
    )
    assert r.status_code == 201, r.text
    sub = r.json()
    has_keys(sub, *SUBSCRIPTION_FIELDS)
    no_snake_case(sub)
    assert (sub["planId"], sub["quantity"], sub["status"], sub["trial"], sub["source"]) == (
        PLAN,
        5,
        "Active",
        False,
        "api",
    )
    assert sub["termEndsAt"].startswith("2027-01-01T00:00:00") and sub["termEndsAt"].endswith("Z")

    trial = api.post(f"{T(api)}/subscriptions", {"planId": PLAN, "quantity": 2, "trial": True}).json()
    assert trial["trial"] is True and ISO_Z.match(trial["trialEndsAt"])

    listed = page_items(api.get(f"{T(api)}/subscriptions", "reader"))
    assert {s["id"] for s in listed} == {sub["id"], trial["id"]}
    assert page_items(api.get(f"{T(api)}/subscriptions?planId={BASIC}", "reader")) == []
    assert api.get(f"{T(api)}/subscriptions/{sub['id']}", "reader").json() == sub

    patched = api.patch(f"{T(api)}/subscriptions/{sub['id']}", {"quantity": 8, "autoRenew": False})
    assert patched.status_code == 200 and (patched.json()["quantity"], patched.json()["autoRenew"]) == (
        8,
        False,
    )
    row = api.get(f"{T(api)}/licenses/{PLAN}").json()
    assert row["purchased"] == 10 and row["units"] == {"enabled": 10, "warning": 0, "suspended": 0}
    [event] = page_items(api.get(f"{T(api)}/audit?action=subscription.quantity_changed"))
    assert event["planId"] == PLAN and event["target"]["id"] == sub["id"]


def test_unknown_subscription_and_plan_are_404(api):
    assert_problem(api.get(f"{T(api)}/subscriptions/00000000-0000-0000-0000-000000000000"), 404, "not_found")
    assert_problem(api.patch(f"{T(api)}/subscriptions/nope", {"quantity": 2}), 404, "not_found")
    assert_problem(api.post(f"{T(api)}/subscriptions", {"planId": "nope", "quantity": 1}), 404, "not_found")


def test_quantity_below_assigned_is_409_unless_forced(api, seed):
    sub = seed.buy(3)
    users = [seed.user()["id"] for _ in range(3)]
    for u in users:  # one by one: the last one is the most recently licensed
        seed.assign(users=[u])
    unchanged = Unchanged(api)
    r = api.patch(f"{T(api)}/subscriptions/{sub}", {"quantity": 2})
    assert_problem(r, 409, "quantity_below_assigned")
    unchanged.check("refused quantity change")

    r = api.patch(f"{T(api)}/subscriptions/{sub}", {"quantity": 2, "force": True})
    assert r.status_code == 200 and r.json()["quantity"] == 2
    row = api.get(f"{T(api)}/licenses/{PLAN}").json()
    assert (row["purchased"], row["assigned"], row["available"], row["waiting"]) == (2, 2, 0, 1)
    waiting = page_items(api.get(f"{T(api)}/licenses/{PLAN}/users?state=Error"))
    assert [w["user"]["id"] for w in waiting] == [users[-1]]
    assert waiting[0]["error"] == "CountViolation"
    lost = page_items(api.get(f"{T(api)}/audit?action=license.seat_lost"))
    assert [e["target"]["id"] for e in lost] == [users[-1]]


def test_terminal_subscriptions_refuse_changes_with_409(api, seed):
    sub = seed.buy(2)
    r = api.patch(f"{T(api)}/subscriptions/{sub}", {"status": "Cancelled"})
    assert r.status_code == 200 and r.json()["status"] == "Cancelled"
    unchanged = Unchanged(api)
    for change in ({"quantity": 5}, {"status": "Active"}, {"autoRenew": True}):
        assert_problem(api.patch(f"{T(api)}/subscriptions/{sub}", change), 409, "subscription_terminal")
    unchanged.check("terminal subscription")


# ---------------------------------------------------------------- the Licenses page

ROW_FIELDS = (
    "planId",
    "planName",
    "productId",
    "productName",
    "spIdentifier",
    "purchased",
    "assigned",
    "available",
    "waiting",
    "units",
    "status",
)


def test_licenses_overview_rows_have_the_spec_fields_and_counts(api, seed):
    assert page_items(api.get(f"{T(api)}/licenses")) == []
    seed.buy(5)
    seed.buy(2, status="Warning")
    seed.assign(users=[seed.user()["id"], seed.user()["id"]])
    [row] = page_items(api.get(f"{T(api)}/licenses", "reader"))
    exact_keys(row, *ROW_FIELDS)
    assert (row["planId"], row["planName"], row["productId"], row["productName"], row["spIdentifier"]) == (
        PLAN,
        "Pro",
        PRODUCT,
        "Innofalls Charts",
        "innofalls.charts.pro",
    )
    assert (row["purchased"], row["assigned"], row["available"], row["waiting"]) == (7, 2, 5, 0)
    exact_keys(row["units"], "enabled", "warning", "suspended")
    assert row["units"] == {"enabled": 5, "warning": 2, "suspended": 0}
    assert isinstance(row["status"], str) and row["status"]
    assert api.get(f"{T(api)}/licenses/{PLAN}", "reader").json() == row


def test_license_row_of_unknown_plan_or_plan_without_pool_is_404(api, seed):
    seed.buy(1)
    assert_problem(api.get(f"{T(api)}/licenses/nope"), 404, "not_found")
    assert_problem(api.get(f"{T(api)}/licenses/{BASIC}"), 404, "not_found")


LICENSED_USER_FIELDS = ("user", "state", "error", "sources", "claimedAt", "lastUsedAt")


def test_licensed_users_show_state_sources_and_filter(api, seed):
    seed.buy(2)
    direct = seed.user()
    member = seed.user()
    both = seed.user()
    group = seed.group("Sales", users=[member["id"], both["id"]])
    seed.assign(users=[direct["id"], both["id"]])
    r = api.post(f"{T(api)}/licenses/{PLAN}/assign", {"groups": [group], "allowPartial": True})
    assert r.status_code == 202
    api.drain()
    items = page_items(api.get(f"{T(api)}/licenses/{PLAN}/users", "reader"))
    assert len(items) == 3
    for item in items:
        exact_keys(item, *LICENSED_USER_FIELDS)
        exact_keys(item["user"], "id", "userPrincipalName", "displayName")
        assert ISO_Z.match(item["claimedAt"])
    by_id = {i["user"]["id"]: i for i in items}
    assert by_id[direct["id"]]["sources"] == [{"type": "direct"}]
    assert by_id[member["id"]]["sources"] == [{"type": "group", "groupId": group, "groupName": "Sales"}]
    assert {"type": "direct"} in by_id[both["id"]]["sources"]
    assert (by_id[direct["id"]]["state"], by_id[direct["id"]]["error"]) == ("Active", None)
    assert (by_id[member["id"]]["state"], by_id[member["id"]]["error"]) == ("Error", "CountViolation")

    def ids(query: str) -> set[str]:
        return {i["user"]["id"] for i in page_items(api.get(f"{T(api)}/licenses/{PLAN}/users?{query}"))}

    assert ids("state=Active") == {direct["id"], both["id"]}
    assert ids("state=Error") == {member["id"]}
    assert ids("source=direct") == {direct["id"], both["id"]}
    assert ids("source=group") == {member["id"], both["id"]}
    assert ids("idleDays=0") == {direct["id"], member["id"], both["id"]}  # nobody has used the product


def test_plan_groups_and_group_licenses_show_processing(api, seed):
    seed.buy(10)
    users = [seed.user()["id"] for _ in range(3)]
    inner = seed.group("Inner", users=users[:1])
    group = seed.group("Outer", users=users[1:], groups=[inner])
    r = api.post(f"{T(api)}/licenses/{PLAN}/assign", {"groups": [group]}, role="license_admin")
    assert r.status_code == 202, r.text
    body = r.json()
    has_keys(body, "planId", "needed", "available", "users", "groups")
    assert (body["planId"], body["needed"], body["available"]) == (PLAN, 3, 10)
    assert body["groups"] == [{"groupId": group, "processingState": "Queued"}]

    [queued] = page_items(api.get(f"{T(api)}/groups/{group}/licenses", "reader"))
    has_keys(
        queued,
        "planId",
        "processingState",
        "membersTotal",
        "membersSeated",
        "membersWithErrors",
        "lastProcessedAt",
    )
    assert (queued["planId"], queued["processingState"]) == (PLAN, "Queued")
    # the seats are promised at once
    assert api.get(f"{T(api)}/licenses/{PLAN}").json()["available"] == 7

    assert api.drain() >= 1
    [done] = page_items(api.get(f"{T(api)}/groups/{group}/licenses", "reader"))
    assert (
        done["processingState"],
        done["membersTotal"],
        done["membersSeated"],
        done["membersWithErrors"],
    ) == (
        "Complete",
        3,
        3,
        0,
    )
    assert ISO_Z.match(done["lastProcessedAt"])
    [listed] = page_items(api.get(f"{T(api)}/licenses/{PLAN}/groups", "reader"))
    assert (listed["groupId"], listed["processingState"], listed["membersSeated"]) == (group, "Complete", 3)
    row = api.get(f"{T(api)}/licenses/{PLAN}").json()
    assert (row["assigned"], row["available"]) == (3, 7)
    assert page_items(api.get(f"{T(api)}/groups/{inner}/licenses")) == []


# ---------------------------------------------------------------- assign / unassign / reassign


def test_assign_users_answers_the_spec_shape_at_once(api, seed):
    seed.buy(3)
    a, b = seed.user(), seed.user()
    r = api.post(
        f"{T(api)}/licenses/{PLAN}/assign", {"users": [a["id"], b["upn"].upper()]}, role="license_admin"
    )
    assert r.status_code == 200, r.text
    body = r.json()
    has_keys(body, "planId", "needed", "available", "users", "groups")
    no_snake_case(body)
    assert (body["planId"], body["needed"], body["available"], body["groups"]) == (PLAN, 2, 3, [])
    for u in body["users"]:
        exact_keys(u, "userId", "state", "error")
    assert body["users"] == [
        {"userId": a["id"], "state": "Active", "error": None},
        {"userId": b["id"], "state": "Active", "error": None},
    ]
    [lic] = page_items(api.get(f"{T(api)}/users/{a['id']}/licenses"))
    exact_keys(
        lic, "planId", "spIdentifier", "state", "error", "sources", "claimedAt", "updatedAt", "lastUsedAt"
    )
    assert (lic["planId"], lic["spIdentifier"], lic["state"], lic["sources"]) == (
        PLAN,
        "innofalls.charts.pro",
        "Active",
        [{"type": "direct"}],
    )
    # assigning again is a no-op
    again = api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": [a["id"]]})
    assert again.status_code == 200 and again.json()["needed"] == 0
    assert api.get(f"{T(api)}/licenses/{PLAN}").json()["assigned"] == 2
    assert len(page_items(api.get(f"{T(api)}/audit?action=license.assigned"))) == 2


def test_not_enough_licenses_is_409_with_needed_and_available_and_changes_nothing(api, seed):
    seed.buy(2)
    seed.assign(users=[seed.user()["id"]])
    users = [seed.user()["id"] for _ in range(3)]
    group = seed.group(users=[seed.user()["id"]])
    unchanged = Unchanged(api)
    r = api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": users})
    body = assert_problem(r, 409, "not_enough_licenses")
    assert (body["needed"], body["available"]) == (3, 1)
    r = api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": users[:1], "groups": [group]})
    body = assert_problem(r, 409, "not_enough_licenses")
    assert (body["needed"], body["available"]) == (2, 1)
    unchanged.check("not_enough_licenses")


def test_dry_run_answers_and_changes_nothing(api, seed):
    seed.buy(1)
    users = [seed.user()["id"] for _ in range(2)]
    unchanged = Unchanged(api)
    r = api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": users, "dryRun": True})
    assert r.status_code == 200
    body = r.json()
    assert (body["needed"], body["available"], body["wouldSucceed"]) == (2, 1, False)
    unchanged.check("dryRun")


def test_allow_partial_seats_what_it_can_and_the_rest_wait(api, seed):
    seed.buy(1)
    a, b = seed.user()["id"], seed.user()["id"]
    r = api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": [a, b], "allowPartial": True})
    assert r.status_code == 200
    # one request: the same claim time for both; ties go by user id (SPEC section 1)
    first, second = sorted([a, b])
    states = {u["userId"]: (u["state"], u["error"]) for u in r.json()["users"]}
    assert states == {first: ("Active", None), second: ("Error", "CountViolation")}
    row = api.get(f"{T(api)}/licenses/{PLAN}").json()
    assert (row["assigned"], row["waiting"], row["available"]) == (1, 1, 0)


def test_assign_and_unassign_name_unknown_things_with_404(api, seed):
    seed.buy(5)
    u = seed.user()["id"]
    unchanged = Unchanged(api)
    cases = [
        (f"{T(api)}/licenses/{PLAN}/assign", {"users": [u, "ghost@contoso.com"]}),
        (f"{T(api)}/licenses/{PLAN}/assign", {"groups": ["00000000-0000-0000-0000-000000000000"]}),
        (f"{T(api)}/licenses/nope/assign", {"users": [u]}),
        (f"{T(api)}/licenses/{PLAN}/unassign", {"users": ["ghost@contoso.com"]}),
        (f"{T(api)}/licenses/{PLAN}/reassign", {"from": u, "to": "ghost@contoso.com"}),
    ]
    for path, body in cases:
        assert_problem(api.post(path, body), 404, "not_found")
    unchanged.check("unknown ids")


def test_unassign_direct_frees_the_seat_for_the_longest_waiting_user(api, seed):
    seed.buy(1)
    a, b = seed.user()["id"], seed.user()["id"]
    api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": [a, b], "allowPartial": True})
    r = api.post(f"{T(api)}/licenses/{PLAN}/unassign", {"users": [a]}, role="license_admin")
    assert r.status_code == 200, r.text
    body = r.json()
    has_keys(body, "planId", "users", "groups")
    assert body["users"][0]["userId"] == a and body["users"][0]["state"] is None
    assert [i["user"]["id"] for i in page_items(api.get(f"{T(api)}/licenses/{PLAN}/users?state=Active"))] == [
        b
    ]


def test_license_inherited_is_409_naming_the_groups(api, seed):
    seed.buy(5)
    u = seed.user()["id"]
    group = seed.group("Finance", users=[u])
    seed.assign(groups=[group])
    api.drain()
    unchanged = Unchanged(api)
    r = api.post(f"{T(api)}/licenses/{PLAN}/unassign", {"users": [u]})
    body = assert_problem(r, 409, "license_inherited")
    assert body["groups"] == [{"id": group, "displayName": "Finance"}]
    unchanged.check("license_inherited")


def test_not_assigned_is_409(api, seed):
    seed.buy(5)
    u = seed.user()["id"]
    other = seed.user()["id"]
    group = seed.group()
    unchanged = Unchanged(api)
    assert_problem(api.post(f"{T(api)}/licenses/{PLAN}/unassign", {"users": [u]}), 409, "not_assigned")
    assert_problem(api.post(f"{T(api)}/licenses/{PLAN}/unassign", {"groups": [group]}), 409, "not_assigned")
    assert_problem(
        api.post(f"{T(api)}/licenses/{PLAN}/reassign", {"from": u, "to": other}), 409, "not_assigned"
    )
    unchanged.check("not_assigned")


def test_unassign_group_is_202_and_members_lose_the_license_after_processing(api, seed):
    seed.buy(5)
    u = seed.user()["id"]
    group = seed.group(users=[u])
    seed.assign(groups=[group])
    api.drain()
    r = api.post(f"{T(api)}/licenses/{PLAN}/unassign", {"groups": [group]})
    assert r.status_code == 202, r.text
    assert r.json()["groups"] == [{"groupId": group, "processingState": "Queued"}]
    api.drain()
    assert page_items(api.get(f"{T(api)}/users/{u}/licenses")) == []
    assert api.get(f"{T(api)}/licenses/{PLAN}").json()["assigned"] == 0


def test_reassign_moves_the_seat_even_when_the_pool_is_full(api, seed):
    seed.buy(1)
    a, b = seed.user(), seed.user()
    seed.assign(users=[a["id"]])
    r = api.post(
        f"{T(api)}/licenses/{PLAN}/reassign", {"from": a["upn"], "to": b["id"]}, role="license_admin"
    )
    assert r.status_code == 200, r.text
    body = r.json()
    has_keys(body, "planId", "from", "to")
    assert body["from"]["userId"] == a["id"] and body["from"]["state"] is None
    assert body["to"] == {"userId": b["id"], "state": "Active", "error": None}
    assert page_items(api.get(f"{T(api)}/users/{a['id']}/licenses")) == []
    [event] = page_items(api.get(f"{T(api)}/audit?action=license.reassigned"))
    assert event["target"]["id"] == b["id"] and event["planId"] == PLAN


def test_reassign_to_a_user_who_already_has_it_is_409_already_assigned(api, seed):
    seed.buy(2)
    a, b = seed.user()["id"], seed.user()["id"]
    seed.assign(users=[a, b])
    unchanged = Unchanged(api)
    r = api.post(f"{T(api)}/licenses/{PLAN}/reassign", {"from": a, "to": b})
    assert_problem(r, 409, "already_assigned")
    unchanged.check("already_assigned")


def test_reprocess_user_and_group(api, seed):
    seed.buy(2)
    u = seed.user()["id"]
    seed.assign(users=[u])
    group = seed.group(users=[u])
    r = api.post(f"{T(api)}/users/{u}/reprocess", role="license_admin")
    assert r.status_code == 200
    [lic] = page_items(r)
    assert (lic["planId"], lic["state"]) == (PLAN, "Active")
    r = api.post(f"{T(api)}/groups/{group}/reprocess", role="license_admin")
    assert r.status_code == 202
    assert set(r.json()) == {"items", "nextCursor"}
    assert_problem(api.post(f"{T(api)}/users/ghost@contoso.com/reprocess"), 404, "not_found")
    assert_problem(
        api.post(f"{T(api)}/groups/00000000-0000-0000-0000-000000000000/reprocess"), 404, "not_found"
    )


# ---------------------------------------------------------------- users

USER_FIELDS = ("id", "userPrincipalName", "displayName", "externalId", "active", "createdAt", "updatedAt")


def test_users_create_get_by_id_or_upn_patch_delete(api, seed):
    r = api.post(
        f"{T(api)}/users",
        {"userPrincipalName": "Ann.Lee@contoso.com", "displayName": "Ann Lee", "externalId": "oid-ann"},
    )
    assert r.status_code == 201, r.text
    user = r.json()
    exact_keys(user, *USER_FIELDS)
    assert (user["userPrincipalName"], user["displayName"], user["externalId"], user["active"]) == (
        "Ann.Lee@contoso.com",
        "Ann Lee",
        "oid-ann",
        True,
    )
    assert ISO_Z.match(user["createdAt"]) and ISO_Z.match(user["updatedAt"])
    assert api.get(f"{T(api)}/users/{user['id']}", "reader").json() == user
    assert api.get(f"{T(api)}/users/ann.lee@CONTOSO.com", "reader").json() == user

    patched = api.patch(
        f"{T(api)}/users/ann.lee@contoso.com", {"displayName": "Ann Lee-Smith", "active": False}
    )
    assert patched.status_code == 200
    assert (patched.json()["displayName"], patched.json()["active"]) == ("Ann Lee-Smith", False)
    assert patched.json()["updatedAt"] > user["updatedAt"]

    assert api.delete(f"{T(api)}/users/{user['id']}").status_code == 204
    assert_problem(api.get(f"{T(api)}/users/{user['id']}"), 404, "not_found")
    assert_problem(api.delete(f"{T(api)}/users/{user['id']}"), 404, "not_found")
    assert_problem(api.patch(f"{T(api)}/users/{user['id']}", {"displayName": "x"}), 404, "not_found")
    actions = [e["action"] for e in page_items(api.get(f"{T(api)}/audit?targetId={user['id']}"))]
    assert actions[0] == "user.deleted" and actions[-1] == "user.created"


def test_duplicate_users_are_409(api, seed):
    seed_user = seed.user()
    api.patch(f"{T(api)}/users/{seed_user['id']}", {"externalId": "oid-1"})
    unchanged = Unchanged(api)
    assert_problem(
        api.post(f"{T(api)}/users", {"userPrincipalName": seed_user["upn"].upper()}), 409, "duplicate"
    )
    assert_problem(
        api.post(f"{T(api)}/users", {"userPrincipalName": "x@contoso.com", "externalId": "oid-1"}),
        409,
        "duplicate",
    )
    other = seed.user()
    unchanged = Unchanged(api)
    assert_problem(
        api.patch(f"{T(api)}/users/{other['id']}", {"userPrincipalName": seed_user["upn"]}), 409, "duplicate"
    )
    unchanged.check("duplicate users")


def test_user_search_matches_upn_prefix_or_a_word_of_the_name_case_insensitively(api):
    for upn, name in (
        ("ann.lee@contoso.com", "Ann Lee"),
        ("bob.stone@contoso.com", "Robert Annson"),
        ("carl@contoso.com", "Carl Zeiss"),
    ):
        assert api.post(f"{T(api)}/users", {"userPrincipalName": upn, "displayName": name}).status_code == 201

    def found(q: str) -> set[str]:
        return {u["userPrincipalName"] for u in page_items(api.get(f"{T(api)}/users?search={q}", "reader"))}

    assert found("ANN") == {"ann.lee@contoso.com", "bob.stone@contoso.com"}
    assert found("bob") == {"bob.stone@contoso.com"}
    assert found("zei") == {"carl@contoso.com"}
    assert found("lee") == {"ann.lee@contoso.com"}
    assert found("nson") == set()  # inside a word is not a prefix


def test_deleting_a_user_frees_their_seat(api, seed):
    seed.buy(1)
    a, b = seed.user()["id"], seed.user()["id"]
    api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": [a, b], "allowPartial": True})
    assert api.delete(f"{T(api)}/users/{a}").status_code == 204
    row = api.get(f"{T(api)}/licenses/{PLAN}").json()
    assert (row["assigned"], row["waiting"]) == (1, 0)
    assert page_items(api.get(f"{T(api)}/users/{b}/licenses"))[0]["state"] == "Active"


# ---------------------------------------------------------------- groups and members

GROUP_FIELDS = ("id", "displayName", "description", "externalId")


def test_groups_create_with_members_get_patch_delete(api, seed):
    u1, u2 = seed.user(), seed.user()
    inner = seed.group("Inner", users=[u2["id"]])
    r = api.post(
        f"{T(api)}/groups",
        {
            "displayName": "Finance",
            "description": "Money people",
            "externalId": "g-fin",
            "members": {"users": [u1["upn"]], "groups": [inner]},
        },
    )
    assert r.status_code == 201, r.text
    group = r.json()
    has_keys(group, *GROUP_FIELDS)
    no_snake_case(group)
    assert (group["displayName"], group["description"], group["externalId"]) == (
        "Finance",
        "Money people",
        "g-fin",
    )
    assert api.get(f"{T(api)}/groups/{group['id']}", "reader").json() == group

    direct = page_items(api.get(f"{T(api)}/groups/{group['id']}/members?transitive=false", "reader"))
    for m in direct:
        has_keys(m, "type", "id", "displayName")
    assert {(m["type"], m["id"]) for m in direct} == {("user", u1["id"]), ("group", inner)}
    transitive = page_items(api.get(f"{T(api)}/groups/{group['id']}/members?transitive=true"))
    assert {m["id"] for m in transitive if m["type"] == "user"} == {u1["id"], u2["id"]}

    patched = api.patch(f"{T(api)}/groups/{group['id']}", {"displayName": "Finance EMEA"})
    assert patched.status_code == 200 and patched.json()["displayName"] == "Finance EMEA"
    listed = page_items(api.get(f"{T(api)}/groups", "reader"))
    assert {g["displayName"] for g in listed} == {"Finance EMEA", "Inner"}

    assert api.delete(f"{T(api)}/groups/{group['id']}").status_code == 204
    assert_problem(api.get(f"{T(api)}/groups/{group['id']}"), 404, "not_found")
    assert_problem(api.get(f"{T(api)}/groups/{group['id']}/members"), 404, "not_found")


def test_add_and_remove_members(api, seed):
    u1, u2 = seed.user(), seed.user()
    group = seed.group()
    sub = seed.group()
    r = api.post(f"{T(api)}/groups/{group}/members", {"users": [u1["id"], u2["upn"]], "groups": [sub]})
    assert r.status_code == 200, r.text
    body = r.json()
    exact_keys(body, "addedUsers", "addedGroups", "removedUsers", "removedGroups")
    assert set(body["addedUsers"]) == {u1["id"], u2["id"]} and body["addedGroups"] == [sub]
    r = api.delete(f"{T(api)}/groups/{group}/members/{u1['id']}")
    assert r.status_code == 200 and r.json()["removedUsers"] == [u1["id"]]
    r = api.delete(f"{T(api)}/groups/{group}/members/{sub}")
    assert r.status_code == 200 and r.json()["removedGroups"] == [sub]
    members = page_items(api.get(f"{T(api)}/groups/{group}/members"))
    assert [m["id"] for m in members] == [u2["id"]]
    assert_problem(api.delete(f"{T(api)}/groups/{group}/members/{u1['id']}"), 404, "not_found")


def test_a_membership_cycle_is_409(api, seed):
    a = seed.group("A")
    b = seed.group("B", groups=[a])
    c = seed.group("C", groups=[b])
    unchanged = Unchanged(api)
    assert_problem(api.post(f"{T(api)}/groups/{a}/members", {"groups": [c]}), 409, "membership_cycle")
    assert_problem(api.post(f"{T(api)}/groups/{a}/members", {"groups": [a]}), 409, "membership_cycle")
    unchanged.check("membership_cycle")


def test_a_group_with_licenses_cannot_be_deleted(api, seed):
    seed.buy(2)
    group = seed.group(users=[seed.user()["id"]])
    seed.assign(groups=[group])
    api.drain()
    unchanged = Unchanged(api)
    body = assert_problem(api.delete(f"{T(api)}/groups/{group}"), 409, "group_has_licenses")
    assert PLAN in body["detail"] or PLAN in str(body.get("plans"))
    unchanged.check("group_has_licenses")


def test_duplicate_group_external_id_is_409(api, seed):
    assert api.post(f"{T(api)}/groups", {"displayName": "G1", "externalId": "ext-1"}).status_code == 201
    assert_problem(
        api.post(f"{T(api)}/groups", {"displayName": "G2", "externalId": "ext-1"}), 409, "duplicate"
    )


def test_a_new_member_of_a_licensed_group_gets_the_license(api, seed):
    seed.buy(5)
    group = seed.group()
    assert api.post(f"{T(api)}/licenses/{PLAN}/assign", {"groups": [group]}).status_code == 202
    api.drain()
    u = seed.user()["id"]
    assert api.post(f"{T(api)}/groups/{group}/members", {"users": [u]}).status_code in (200, 202)
    api.drain()
    [lic] = page_items(api.get(f"{T(api)}/users/{u}/licenses"))
    assert lic["state"] == "Active" and lic["sources"][0]["groupId"] == group


# ---------------------------------------------------------------- the one search field


def test_directory_search_ranks_users_and_groups_in_one_list(api, seed):
    api.post(f"{T(api)}/users", {"userPrincipalName": "sales.rep@contoso.com", "displayName": "Sam Sales"})
    api.post(f"{T(api)}/groups", {"displayName": "Sales"})
    api.post(f"{T(api)}/groups", {"displayName": "Salesforce Admins"})
    hits = page_items(api.get(f"{T(api)}/directory/search?q=sales", "reader"))
    for h in hits:
        has_keys(h, "type", "id", "displayName", "matched")
    assert {h["type"] for h in hits} == {"user", "group"}
    assert hits[0]["displayName"] == "Sales"  # the whole-name match first
    only_groups = page_items(api.get(f"{T(api)}/directory/search?q=sales&types=group"))
    assert {h["type"] for h in only_groups} == {"group"}
    assert_problem(api.get(f"{T(api)}/directory/search?q=sales&types=printer"), 422)


# ---------------------------------------------------------------- audit

AUDIT_FIELDS = ("id", "at", "actor", "action", "target", "planId", "details", "requestId")


def test_audit_is_newest_first_with_spec_fields_and_filters(api, seed):
    seed.buy(5)
    u = api.post(f"{T(api)}/users", {"userPrincipalName": "aud@contoso.com"}, role="global_admin").json()[
        "id"
    ]
    api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": [u]}, role="license_admin")
    api.post(f"{T(api)}/licenses/{PLAN}/unassign", {"users": [u]}, role="license_admin")

    events = page_items(api.get(f"{T(api)}/audit", "reader"))
    for e in events:
        exact_keys(e, *AUDIT_FIELDS)
        exact_keys(e["actor"], "type", "id", "name")
        assert ISO_Z.match(e["at"])
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)

    mine = [
        e
        for e in page_items(api.get(f"{T(api)}/audit?targetId={u}"))
        if e["action"] in ("license.unassigned", "license.assigned", "user.created")
    ]
    assert [e["action"] for e in mine] == ["license.unassigned", "license.assigned", "user.created"]
    assigned = mine[1]
    assert assigned["actor"]["type"] == "token" and assigned["actor"]["name"] == "license_admin token"
    assert assigned["target"] == {"type": "user", "id": u, "name": "aud@contoso.com"}
    assert assigned["planId"] == PLAN

    actor = assigned["actor"]["id"]
    by_actor = page_items(api.get(f"{T(api)}/audit?actorId={actor}"))
    assert {e["action"] for e in by_actor} >= {"license.assigned", "license.unassigned"}
    assert all(e["actor"]["id"] == actor for e in by_actor)
    assert "user.created" not in {e["action"] for e in by_actor}
    assert [e["id"] for e in page_items(api.get(f"{T(api)}/audit?action=license.assigned"))] == [
        assigned["id"]
    ]
    wildcard = {e["action"] for e in page_items(api.get(f"{T(api)}/audit?action=license.*"))}
    assert {"license.assigned", "license.unassigned"} <= wildcard
    assert all(a.startswith("license.") for a in wildcard)
    by_plan = page_items(api.get(f"{T(api)}/audit?planId={PLAN}"))
    assert {e["action"] for e in by_plan} >= {
        "subscription.created",
        "license.assigned",
        "license.unassigned",
    }
    assert all(e["planId"] == PLAN for e in by_plan)

    at = assigned["at"]
    since = page_items(api.get(f"{T(api)}/audit", params={"since": at}))
    assert all(e["at"] >= at for e in since) and assigned["id"] in {e["id"] for e in since}
    assert mine[0]["id"] in {e["id"] for e in since}
    until = page_items(api.get(f"{T(api)}/audit", params={"until": at}))
    assert all(e["at"] < at for e in until) and assigned["id"] not in {e["id"] for e in until}
    assert len(since) + len(until) == len(events)
    # fabrikam's events are not contoso's
    assert not {e["id"] for e in events} & {
        e["id"] for e in page_items(api.get(f"/v1/tenants/{api.other_tenant}/audit", "operator"))
    }


def test_audit_exports_csv(api, seed):
    seed.buy(5)
    u = seed.user()["id"]
    api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": [u]}, headers={"X-Request-Id": "csv-1"})
    r = api.get(f"{T(api)}/audit", "reader", headers={"Accept": "text/csv"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    json_events = page_items(api.get(f"{T(api)}/audit?limit=1000"))
    assert [row["id"] for row in rows] == [e["id"] for e in json_events]
    [assigned] = [row for row in rows if row["action"] == "license.assigned"]
    assert (assigned["targetId"], assigned["planId"], assigned["requestId"]) == (u, PLAN, "csv-1")
    assert {"at", "actorType", "actorId", "actorName", "targetType", "targetName", "details"} <= set(assigned)
    filtered = list(
        csv.DictReader(
            io.StringIO(
                api.get(f"{T(api)}/audit?action=license.assigned", headers={"Accept": "text/csv"}).text
            )
        )
    )
    assert [row["id"] for row in filtered] == [assigned["id"]]


# ---------------------------------------------------------------- tokens


def test_token_secret_is_shown_once_and_revoked_tokens_get_401(api):
    r = api.post(f"{T(api)}/tokens", {"role": "reader", "name": "ci reader"})
    assert r.status_code == 201, r.text
    created = r.json()
    has_keys(created, "id", "name", "role", "secret", "createdAt")
    secret = created["secret"]
    assert secret.startswith("ld_") and len(secret) >= 32
    assert (created["name"], created["role"]) == ("ci reader", "reader")
    assert secret.startswith(created["prefix"]) and len(created["prefix"]) < len(secret) // 2

    # the token works, with its role
    assert api.client.get(f"{T(api)}/users", headers=bearer(secret)).status_code == 200
    assert (
        api.client.post(
            f"{T(api)}/users", json={"userPrincipalName": "x@contoso.com"}, headers=bearer(secret)
        ).status_code
        == 403
    )

    listed = api.get(f"{T(api)}/tokens")
    items = page_items(listed)
    assert secret not in listed.text
    [mine] = [t for t in items if t["id"] == created["id"]]
    assert "secret" not in mine and all("secret" not in t for t in items)
    assert mine["role"] == "reader"
    assert api.get(f"{T(api)}/tokens/{created['id']}").status_code in (404, 405)  # no way to read it again

    assert api.delete(f"{T(api)}/tokens/{created['id']}").status_code == 204
    r = api.client.get(f"{T(api)}/users", headers=bearer(secret))
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    [revoked] = [t for t in page_items(api.get(f"{T(api)}/tokens")) if t["id"] == created["id"]]
    assert revoked["revokedAt"] is not None
    assert_problem(api.delete(f"{T(api)}/tokens/{created['id']}"), 404, "not_found")
    actions = [e["action"] for e in page_items(api.get(f"{T(api)}/audit?targetId={created['id']}"))]
    assert actions == ["token.revoked", "token.created"]
    assert secret not in api.get(f"{T(api)}/audit?limit=1000").text


def test_a_global_admin_cannot_mint_an_operator_token(api):
    unchanged = Unchanged(api)
    r = api.post(f"{T(api)}/tokens", {"role": "operator"})
    assert 400 <= r.status_code < 500 and r.status_code != 404
    assert_problem(r, r.status_code)
    unchanged.check("operator token by a tenant admin")


def test_revoking_an_unknown_or_foreign_token_is_404(api):
    foreign = api.post(f"/v1/tenants/{api.other_tenant}/tokens", {"role": "reader"}, role="operator").json()
    assert_problem(api.delete(f"{T(api)}/tokens/{foreign['id']}"), 404, "not_found")
    assert (
        api.client.get(f"/v1/tenants/{api.other_tenant}/users", headers=bearer(foreign["secret"])).status_code
        == 200
    )
    assert_problem(api.delete(f"{T(api)}/tokens/00000000-0000-0000-0000-000000000000"), 404, "not_found")


# ---------------------------------------------------------------- OpenAPI


def _expected_error_codes(method: str, path: str) -> set[int]:
    """The problem statuses a route of SPEC section 2 can answer with, from its status codes. Routes of
    other sections (the run-time check) are only held to documenting problems as problem documents."""
    admin = {(m, _shape(p)) for m, p in SPEC_ENDPOINTS} - {("GET", "/v1/health"), ("GET", "/v1/ready")}
    if (method, _shape(path)) not in admin:
        return set()
    codes = {401, 403, 422}  # every authenticated route; 422: invalid query/path values
    if "{" in path:
        codes.add(404)
    if method in ("POST", "PATCH"):
        codes |= {400, 413}  # malformed bodies, oversize bodies
    if method == "POST":
        codes.add(409)  # Idempotency-Key: a request with the same key still in progress
    rules = {  # SPEC section 2: the rules that refuse with 409
        ("POST", "/v1/tenants"),
        ("PATCH", "/v1/tenants/{t}"),
        ("POST", "/v1/products"),
        ("POST", "/v1/products/{p}/plans"),
        ("PATCH", "/v1/tenants/{t}/subscriptions/{id}"),
        ("POST", "/v1/tenants/{t}/licenses/{plan}/assign"),
        ("POST", "/v1/tenants/{t}/licenses/{plan}/unassign"),
        ("POST", "/v1/tenants/{t}/licenses/{plan}/reassign"),
        ("POST", "/v1/tenants/{t}/users"),
        ("PATCH", "/v1/tenants/{t}/users/{user}"),
        ("POST", "/v1/tenants/{t}/groups"),
        ("PATCH", "/v1/tenants/{t}/groups/{id}"),
        ("DELETE", "/v1/tenants/{t}/groups/{id}"),
        ("POST", "/v1/tenants/{t}/groups/{id}/members"),
    }
    if (method, path) in rules:
        codes.add(409)
    return codes


def test_openapi_is_3_1_and_documents_every_routes_error_codes(api):
    r = api.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert api.client.get("/docs").status_code == 200
    operations = [(m.upper(), p, op) for p, ops in doc["paths"].items() for m, op in ops.items()]
    assert len(operations) >= 40
    missing = {}
    not_problems = []
    for method, path, op in operations:
        documented = {int(s) for s in op["responses"] if s.isdigit()}
        assert any(200 <= s < 300 for s in documented), f"{method} {path} documents no success"
        lacking = _expected_error_codes(method, path) - documented
        if lacking:
            missing[f"{method} {path}"] = sorted(lacking)
        for status in sorted(documented & {400, 401, 403, 404, 409, 413, 422}):
            content = op["responses"][str(status)].get("content", {})
            if "application/problem+json" not in content:
                not_problems.append(f"{method} {path} {status}: {sorted(content)}")
    assert not missing and not not_problems, (
        f"undocumented error codes: {missing}; error answers not documented as problem documents: "
        f"{not_problems}"
    )
    assert "202" in doc["paths"]["/v1/tenants/{t}/licenses/{plan}/assign"]["post"]["responses"]
