"""Idempotency-Key on mutating POSTs, and cursor paging that stays exact while rows are inserted between
page fetches (SPEC section 2)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from licensedesk.directory import service as directory
from tests.api.support import PLAN, Seed, Unchanged, assert_problem, bearer


@pytest.fixture
def seed(api) -> Seed:
    return Seed(api, api.tenant)


def T(api: Any) -> str:
    return f"/v1/tenants/{api.tenant}"


def count_subscriptions(api: Any) -> int:
    return len(api.get(f"{T(api)}/subscriptions?limit=1000").json()["items"])


# ---------------------------------------------------------------- Idempotency-Key


def test_same_key_and_body_replays_the_first_answer_and_changes_nothing(api):
    body = {"planId": PLAN, "quantity": 3}
    first = api.post(f"{T(api)}/subscriptions", body, headers={"Idempotency-Key": "buy-1"})
    assert first.status_code == 201, first.text
    assert first.headers.get("idempotent-replayed") is None
    unchanged = Unchanged(api)
    for _ in range(3):
        again = api.post(f"{T(api)}/subscriptions", body, headers={"Idempotency-Key": "buy-1"})
        assert again.status_code == 201
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.content == first.content
        assert again.headers["content-type"] == first.headers["content-type"]
    unchanged.check("replays")
    assert count_subscriptions(api) == 1
    assert api.get(f"{T(api)}/licenses/{PLAN}").json()["purchased"] == 3
    # without the key the same body is a new purchase
    assert api.post(f"{T(api)}/subscriptions", body).status_code == 201
    assert count_subscriptions(api) == 2


def test_replay_covers_every_kind_of_mutating_post(api, seed):
    seed.buy(10)
    u = seed.user()
    g = seed.group(users=[seed.user()["id"]])
    cases: list[tuple[str, dict[str, Any], int]] = [
        (f"{T(api)}/users", {"userPrincipalName": "idem@contoso.com"}, 201),
        (f"{T(api)}/groups", {"displayName": "Idem Group"}, 201),
        (f"{T(api)}/groups/{g}/members", {"users": [u["id"]]}, 200),
        (f"{T(api)}/licenses/{PLAN}/assign", {"users": [u["id"]]}, 200),
        (f"{T(api)}/licenses/{PLAN}/assign", {"groups": [g]}, 202),
        (f"{T(api)}/tokens", {"role": "reader", "name": "idem"}, 201),
        (f"{T(api)}/users/{u['id']}/reprocess", {}, 200),
    ]
    for i, (path, body, status) in enumerate(cases):
        key = f"kind-{i}"
        first = api.post(path, body, headers={"Idempotency-Key": key})
        assert first.status_code == status, (path, first.text)
        unchanged = Unchanged(api)
        again = api.post(path, body, headers={"Idempotency-Key": key})
        assert (again.status_code, again.content) == (first.status_code, first.content), path
        assert again.headers.get("idempotent-replayed") == "true", path
        unchanged.check(path)
    # the token replay hands back the same secret, not a second token
    tokens = api.get(f"{T(api)}/tokens?limit=1000").json()["items"]
    assert len([t for t in tokens if t["name"] == "idem"]) == 1


def test_operator_posts_outside_tenants_are_idempotent_too(api):
    body = {"slug": "idem-tenant", "name": "Idem"}
    first = api.post("/v1/tenants", body, role="operator", headers={"Idempotency-Key": "t-1"})
    assert first.status_code == 201
    again = api.post("/v1/tenants", body, role="operator", headers={"Idempotency-Key": "t-1"})
    assert (again.status_code, again.content) == (201, first.content)
    assert again.headers.get("idempotent-replayed") == "true"


def test_a_refusal_is_replayed_as_well_even_after_the_world_changed(api, seed):
    """The first answer is the answer: a 409 replays as a 409 although seats were bought since."""
    seed.buy(1)
    users = [seed.user()["id"] for _ in range(2)]
    body = {"users": users}
    first = api.post(f"{T(api)}/licenses/{PLAN}/assign", body, headers={"Idempotency-Key": "short"})
    assert_problem(first, 409, "not_enough_licenses")
    seed.buy(5)
    unchanged = Unchanged(api)
    again = api.post(f"{T(api)}/licenses/{PLAN}/assign", body, headers={"Idempotency-Key": "short"})
    assert (again.status_code, again.content) == (409, first.content)
    assert again.headers.get("idempotent-replayed") == "true"
    unchanged.check("replayed refusal")
    assert api.get(f"{T(api)}/licenses/{PLAN}").json()["assigned"] == 0


def test_same_key_with_another_body_or_path_is_422(api, seed):
    first = api.post(
        f"{T(api)}/subscriptions", {"planId": PLAN, "quantity": 1}, headers={"Idempotency-Key": "k"}
    )
    assert first.status_code == 201
    unchanged = Unchanged(api)
    other_body = api.post(
        f"{T(api)}/subscriptions", {"planId": PLAN, "quantity": 2}, headers={"Idempotency-Key": "k"}
    )
    assert_problem(other_body, 422, "idempotency_key_reused")
    assert other_body.headers.get("idempotent-replayed") is None
    reordered = api.post(
        f"{T(api)}/subscriptions",
        {"quantity": 1, "planId": PLAN, "autoRenew": False},
        headers={"Idempotency-Key": "k"},
    )
    assert reordered.status_code == 422
    other_path = api.post(
        f"{T(api)}/users", {"planId": PLAN, "quantity": 1}, headers={"Idempotency-Key": "k"}
    )
    assert_problem(other_path, 422, "idempotency_key_reused")
    unchanged.check("reused keys")
    assert count_subscriptions(api) == 1


def test_keys_belong_to_their_caller(api, seed):
    """The same key from another token (same tenant, another tenant, the operator) is a new request."""
    body = {"planId": PLAN, "quantity": 1}
    a = api.post(f"{T(api)}/subscriptions", body, role="global_admin", headers={"Idempotency-Key": "shared"})
    b = api.post(f"{T(api)}/subscriptions", body, role="billing_admin", headers={"Idempotency-Key": "shared"})
    c = api.post(f"{T(api)}/subscriptions", body, role="operator", headers={"Idempotency-Key": "shared"})
    second_admin = seed.token("global_admin")[1]
    d = api.client.post(
        f"{T(api)}/subscriptions", json=body, headers={**bearer(second_admin), "Idempotency-Key": "shared"}
    )
    for r in (a, b, c, d):
        assert r.status_code == 201, r.text
        assert r.headers.get("idempotent-replayed") is None
    assert len({r.json()["id"] for r in (a, b, c, d)}) == 4
    assert count_subscriptions(api) == 4
    # fabrikam's admin with the same key on fabrikam: neither a replay of contoso's answer nor a 422
    f = api.post(
        f"/v1/tenants/{api.other_tenant}/subscriptions",
        body,
        other=True,
        headers={"Idempotency-Key": "shared"},
    )
    assert f.status_code == 201 and f.headers.get("idempotent-replayed") is None
    assert f.json()["id"] not in {r.json()["id"] for r in (a, b, c, d)}


def test_a_key_is_remembered_for_24_hours_only(api):
    body = {"planId": PLAN, "quantity": 1}
    first = api.post(f"{T(api)}/subscriptions", body, headers={"Idempotency-Key": "day"})
    api.ctx.clock.advance(hours=23)
    assert (
        api.post(f"{T(api)}/subscriptions", body, headers={"Idempotency-Key": "day"}).content == first.content
    )
    api.ctx.clock.advance(timedelta(hours=2))
    later = api.post(f"{T(api)}/subscriptions", body, headers={"Idempotency-Key": "day"})
    assert later.status_code == 201 and later.headers.get("idempotent-replayed") is None
    assert later.json()["id"] != first.json()["id"]


def test_a_replay_is_refused_to_a_caller_who_lost_the_right(api, seed):
    """A replay is still an authenticated call: a revoked token gets 401, not the stored answer."""
    token_id, secret = seed.token("global_admin")
    body = {"userPrincipalName": "once@contoso.com"}
    first = api.client.post(f"{T(api)}/users", json=body, headers={**bearer(secret), "Idempotency-Key": "r"})
    assert first.status_code == 201
    assert api.delete(f"{T(api)}/tokens/{token_id}").status_code == 204
    again = api.client.post(f"{T(api)}/users", json=body, headers={**bearer(secret), "Idempotency-Key": "r"})
    assert_problem(again, 401, "unauthenticated")


# ---------------------------------------------------------------- paging


def walk(
    api: Any,
    path: str,
    limit: int,
    key: Callable[[dict[str, Any]], str],
    between: Callable[[int], None] | None = None,
) -> list[str]:
    """Every item of a collection, page by page; `between(n)` runs after page n (to insert rows)."""
    seen: list[str] = []
    cursor = None
    for n in range(1000):
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = api.get(url, "operator")
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"items", "nextCursor"}
        assert len(body["items"]) <= limit
        seen += [key(i) for i in body["items"]]
        cursor = body["nextCursor"]
        if cursor is None:
            return seen
        assert body["items"], "a non-final page is empty"
        if between:
            between(n)
    raise AssertionError("paging did not end")


def assert_exactly_once(seen: list[str], expected: set[str], what: str) -> None:
    dupes = sorted({s for s in seen if seen.count(s) > 1})
    assert not dupes, f"{what}: duplicates across pages: {dupes[:5]}"
    gaps = expected - set(seen)
    assert not gaps, f"{what}: missing from every page: {sorted(gaps)[:5]}"


def test_users_pages_have_no_duplicates_or_gaps_while_users_are_added(api, seed):
    original = {seed.user("mid")["id"] for _ in range(25)}
    added: list[str] = []

    def insert(n: int) -> None:  # before, among and after the cursor in userPrincipalName order
        for prefix in ("aaa", "mid", "zzz"):
            added.append(seed.user(f"{prefix}x{n}")["id"])

    seen = walk(api, f"{T(api)}/users", 7, lambda u: u["id"], insert)
    assert_exactly_once(seen, original, "users")
    assert added and set(seen) <= original | set(added)
    # the pages come in one order (userPrincipalName, case-insensitive)
    listed = walk(api, f"{T(api)}/users", 1000, lambda u: u["userPrincipalName"].lower())
    assert listed == sorted(listed)


def test_audit_pages_have_no_duplicates_or_gaps_while_events_are_written(api, seed):
    seed.buy(100)
    # one request writes many events with the same time: pages must split that tie exactly
    bulk = [seed.user()["id"] for _ in range(15)]
    assert api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": bulk}).status_code == 200
    for _ in range(10):
        seed.user()
    everything = walk(api, f"{T(api)}/audit", 1000, lambda e: e["id"])
    original = set(everything)
    assert len(original) == len(everything) >= 40

    def write(n: int) -> None:
        seed.user(f"late{n}x")
        api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": [seed.user()["id"], seed.user()["id"]]})

    seen = walk(api, f"{T(api)}/audit", 6, lambda e: e["id"], write)
    assert_exactly_once(seen, original, "audit")
    assert set(seen) == original, "newer events must not appear behind the cursor of an older page"
    ats = walk(api, f"{T(api)}/audit?action=license.assigned", 4, lambda e: e["at"] + "|" + e["id"])
    assert ats == sorted(ats, reverse=True)


def test_licensed_users_pages_have_no_duplicates_or_gaps_while_users_are_licensed(api, seed):
    seed.buy(1000)
    same_claim = [seed.user()["id"] for _ in range(20)]  # one request: one claim time, ties by user id
    assert api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": same_claim}).status_code == 200
    one_by_one = [seed.user()["id"] for _ in range(5)]
    for u in one_by_one:
        seed.assign(users=[u])
    group_members = [seed.user()["id"] for _ in range(5)]
    seed.assign(groups=[seed.group(users=group_members)])
    api.drain()
    original = set(same_claim + one_by_one + group_members)
    added: list[str] = []

    def license_more(n: int) -> None:
        fresh = [seed.user()["id"] for _ in range(3)]
        added.extend(fresh)
        api.post(f"{T(api)}/licenses/{PLAN}/assign", {"users": fresh})

    path = f"{T(api)}/licenses/{PLAN}/users"
    seen = walk(api, path, 6, lambda i: i["user"]["id"], license_more)
    assert_exactly_once(seen, original, "licensed users")
    assert set(seen) <= original | set(added)
    ordered = walk(api, path, 4, lambda i: i["claimedAt"] + "|" + i["user"]["id"])
    assert ordered == sorted(ordered), "licensed users are listed in claim order"


@pytest.mark.parametrize(
    "collection",
    [
        "groups",
        "group members",
        "transitive members",
        "tokens",
        "subscriptions",
        "search",
        "plan groups",
        "tenants",
    ],
)
def test_every_collection_pages_without_duplicates_or_gaps(api, seed, collection):
    seed.buy(50)
    users = [seed.user("pager")["id"] for _ in range(12)]
    if collection in ("groups", "search", "plan groups"):
        ids = {seed.group(f"Pager group {i:02d}") for i in range(12)}
        if collection == "plan groups":
            for g in ids:
                seed.assign(groups=[g])
            api.drain()
    if collection == "groups":
        path, key, expected = f"{T(api)}/groups", (lambda g: g["id"]), ids
    elif collection == "search":
        path, key = f"{T(api)}/directory/search?q=pager", (lambda h: h["type"] + h["id"])
        expected = {"group" + g for g in ids} | {"user" + u for u in users}
    elif collection == "plan groups":
        path, key, expected = f"{T(api)}/licenses/{PLAN}/groups", (lambda g: g["groupId"]), ids
    elif collection in ("group members", "transitive members"):
        inner = seed.group(users=users[:6])
        outer = seed.group(users=users[6:], groups=[inner])
        transitive = collection == "transitive members"
        path = f"{T(api)}/groups/{outer}/members?transitive={'true' if transitive else 'false'}"
        key = lambda m: m["type"] + m["id"]  # noqa: E731
        expected = {"user" + u for u in (users if transitive else users[6:])} | {"group" + inner}
    elif collection == "tokens":
        for _ in range(10):
            seed.token()
        path, key = f"{T(api)}/tokens", (lambda t: t["id"])
        expected = {t["id"] for t in api.get(f"{T(api)}/tokens?limit=1000").json()["items"]}
    elif collection == "subscriptions":
        for _ in range(10):
            seed.buy(1)
        path, key = f"{T(api)}/subscriptions", (lambda s: s["id"])
        expected = {s["id"] for s in api.get(f"{path}?limit=1000").json()["items"]}
        assert len(expected) == 11
    else:
        for i in range(10):
            api.post("/v1/tenants", {"slug": f"pager-{i}", "name": "Pager"}, role="operator")
        path, key = "/v1/tenants", (lambda t: t["slug"])
        expected = {f"pager-{i}" for i in range(10)} | {"contoso", "fabrikam"}
    seen = walk(api, path, 5, key)
    assert_exactly_once(seen, expected, collection)
    assert len(seen) == len(expected), f"{collection}: unexpected items {set(seen) - expected}"


def test_limit_defaults_to_100_and_goes_up_to_1000(api, seed):
    users = [
        directory.create_user(api.ctx, api.tenant, f"bulk{i:04d}@contoso.com", f"Bulk {i}").id
        for i in range(150)
    ]
    first = api.get(f"{T(api)}/users").json()
    assert len(first["items"]) == 100 and first["nextCursor"]
    rest = api.get(f"{T(api)}/users?cursor={first['nextCursor']}").json()
    assert len(rest["items"]) == 50 and rest["nextCursor"] is None
    everything = api.get(f"{T(api)}/users?limit=1000").json()
    assert {u["id"] for u in everything["items"]} == set(users) and everything["nextCursor"] is None
    assert api.get(f"{T(api)}/users?limit=1001").status_code in (400, 422)
