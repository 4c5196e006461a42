"""Bad input, table by table (SPEC sections 2 and 10): malformed JSON, wrong types, unknown fields,
fields the server owns, oversize bodies, invalid ids, cursors and limits, out-of-range times, Unicode
edge cases. Each row must answer a 4xx RFC 9457 problem document (type, title, status, detail, code),
never a 5xx, and a whole table must leave the database, the audit log and the Licenses page unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api.support import (
    PLAN,
    PROBLEM_JSON,
    PRODUCT,
    Seed,
    Unchanged,
    bearer,
    cursor_of,
    lenient,
)

MIB = 1024 * 1024
TEN_KB = "x" * 10_240


@dataclass
class Fx:
    """Objects of contoso that the rows name."""

    t: str
    user: str
    upn: str
    group: str
    sub: str
    token: str
    other_user: str  # a user of fabrikam


@dataclass
class Row:
    name: str
    method: str
    path: Callable[[Fx], str]
    json: Any = None  # a JSON body (Python value), or...
    raw: bytes | None = None  # ...raw bytes, sent as application/json
    expect: tuple[int, ...] = ()  # the acceptable statuses; empty: any 4xx
    code: str | None = None  # the problem code, when the SPEC fixes it
    role: str = "global_admin"
    headers: dict[str, str] | None = None
    page_ok: bool = False  # a filter that can only find nothing may also answer an empty page


@pytest.fixture
def fx(api) -> Fx:
    seed = Seed(api, api.tenant)
    sub = seed.buy(5)
    user = seed.user()
    seed.assign(users=[user["id"]])
    group = seed.group("Licensed", users=[seed.user()["id"]])
    seed.assign(groups=[group])
    api.drain()
    other = Seed(api, api.other_tenant, domain="fabrikam.com").user()
    return Fx(api.tenant, user["id"], user["upn"], group, sub, seed.token("reader")[0], other["id"])


def _send(api: Any, row: Row, fx: Fx) -> Any:
    headers = {**bearer(api.tokens[row.role]), **(row.headers or {})}
    client = lenient(api)
    if row.raw is not None:
        return client.request(
            row.method, row.path(fx), content=row.raw, headers={"Content-Type": "application/json", **headers}
        )
    if row.json is not None:
        return client.request(row.method, row.path(fx), json=row.json, headers=headers)
    return client.request(row.method, row.path(fx), headers=headers)


def _judge(r: Any, row: Row) -> str | None:
    """None when the answer is right, else what is wrong."""
    if r.status_code >= 500:
        return f"{r.status_code} (a server error): {r.text[:200]}"
    if row.page_ok and r.status_code == 200 and r.json() == {"items": [], "nextCursor": None}:
        return None
    if not 400 <= r.status_code < 500:
        return f"accepted with {r.status_code}: {r.text[:200]}"
    if row.expect and r.status_code not in row.expect:
        return f"expected {row.expect}, got {r.status_code}: {r.text[:200]}"
    if not r.headers.get("content-type", "").startswith(PROBLEM_JSON):
        return f"not a problem document: {r.headers.get('content-type')}"
    try:
        body = r.json()
    except ValueError:
        return f"problem document is not JSON: {r.text[:200]}"
    missing = [k for k in ("type", "title", "status", "detail", "code") if not body.get(k)]
    if missing:
        return f"problem document without {missing}: {body}"
    if body["status"] != r.status_code:
        return f"problem status {body['status']} != {r.status_code}"
    if row.code and body["code"] != row.code:
        return f"code {body['code']!r}, expected {row.code!r}"
    if not r.headers.get("x-request-id"):
        return "no X-Request-Id"
    return None


def run_table(api: Any, fx: Fx, rows: list[Row]) -> None:
    unchanged = Unchanged(api)
    wrong = []
    for row in rows:
        verdict = _judge(_send(api, row, fx), row)
        if verdict:
            wrong.append(f"[{row.name}] {row.method} {row.path(fx)[:120]}: {verdict}")
    count = f"{len(wrong)} of {len(rows)} rows wrong"
    try:
        unchanged.check("the bad requests")
    except AssertionError as exc:
        wrong.append(str(exc)[:1500])
    assert not wrong, f"{count}:\n" + "\n".join(wrong)


def users(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/users"


def user(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/users/{fx.user}"


def groups(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/groups"


def group(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/groups/{fx.group}"


def members(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/groups/{fx.group}/members"


def subs(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/subscriptions"


def sub(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/subscriptions/{fx.sub}"


def assign(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/licenses/{PLAN}/assign"


def unassign(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/licenses/{PLAN}/unassign"


def reassign(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/licenses/{PLAN}/reassign"


def tenant(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}"


def tokens(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/tokens"


def audit(fx: Fx) -> str:
    return f"/v1/tenants/{fx.t}/audit"


def const(path: str) -> Callable[[Fx], str]:
    return lambda _fx: path


# ---------------------------------------------------------------- malformed JSON (400)

_WRITES = [
    ("POST", users),
    ("PATCH", user),
    ("POST", groups),
    ("POST", members),
    ("POST", subs),
    ("PATCH", sub),
    ("POST", assign),
    ("POST", unassign),
    ("POST", reassign),
    ("PATCH", tenant),
    ("POST", tokens),
]
_MALFORMED = {
    "unterminated object": b'{"userPrincipalName": "q@contoso.com"',
    "bare brace": b"{",
    "empty body": b"",
    "null": b"null",
    "array": b"[]",
    "string": b'"users"',
    "number": b"42",
    "trailing garbage": b'{"users": []} x',
    "single quotes": b"{'users': []}",
    "trailing comma": b'{"users": [],}',
    "not UTF-8": b'\xff\xfe{"\x00u',
    "deep nesting": b"[" * 20_000 + b"]" * 20_000,
    "comment": b'{"users": [] /* c */}',
}


def test_malformed_json_is_400(api, fx):
    rows = [
        Row(f"{name}", method, path, raw=raw, expect=(400,))
        for method, path in _WRITES
        for name, raw in _MALFORMED.items()
    ]
    run_table(api, fx, rows)


def test_a_json_body_with_another_content_type_is_refused(api, fx):
    rows = [
        Row(
            "text/plain",
            "POST",
            users,
            headers={"Content-Type": "text/plain"},
            raw=b'{"userPrincipalName": "a@b.c"}',
        ),
        Row(
            "form",
            "POST",
            users,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            raw=b"userPrincipalName=a@b.c",
        ),
    ]
    # raw rows are sent as application/json unless the row's headers say otherwise
    run_table(api, fx, rows)


# ---------------------------------------------------------------- wrong types and values (400 / 422)


def test_wrong_types_and_values_are_refused(api, fx):
    u = {"userPrincipalName": "typed@contoso.com"}
    rows = [
        Row("upn number", "POST", users, {"userPrincipalName": 5}),
        Row("upn list", "POST", users, {"userPrincipalName": ["a@contoso.com"]}),
        Row("upn null", "POST", users, {"userPrincipalName": None}),
        Row("upn missing", "POST", users, {"displayName": "No Upn"}),
        Row("upn not email-like", "POST", users, {"userPrincipalName": "no-at-sign"}),
        Row("upn with spaces", "POST", users, {"userPrincipalName": "a b@contoso.com"}),
        Row("displayName object", "POST", users, {**u, "displayName": {"x": 1}}),
        Row("active null on patch", "PATCH", user, {"active": None}),
        Row("upn null on patch", "PATCH", user, {"userPrincipalName": None}),
        Row("quantity 1.5", "POST", subs, {"planId": PLAN, "quantity": 1.5}),
        Row("quantity 0", "POST", subs, {"planId": PLAN, "quantity": 0}),
        Row("quantity -1", "POST", subs, {"planId": PLAN, "quantity": -1}),
        Row("quantity huge", "POST", subs, {"planId": PLAN, "quantity": 10**30}),
        Row("quantity null on patch", "PATCH", sub, {"quantity": None}),
        Row("status unknown", "POST", subs, {"planId": PLAN, "quantity": 1, "status": "Paid"}),
        Row("status Expired at creation", "POST", subs, {"planId": PLAN, "quantity": 1, "status": "Expired"}),
        Row("status lower case", "PATCH", sub, {"status": "active"}),
        Row("termEndsAt not a date", "POST", subs, {"planId": PLAN, "quantity": 1, "termEndsAt": "soon"}),
        Row(
            "termEndsAt Feb 30",
            "POST",
            subs,
            {"planId": PLAN, "quantity": 1, "termEndsAt": "2027-02-30T00:00:00Z"},
        ),
        Row(
            "termEndsAt past",
            "POST",
            subs,
            {"planId": PLAN, "quantity": 1, "termEndsAt": "2000-01-01T00:00:00Z"},
        ),
        Row(
            "trial on a plan without one",
            "POST",
            subs,
            {"planId": "innofalls-charts-basic", "quantity": 1, "trial": True},
        ),
        Row("users a string", "POST", assign, {"users": "a@contoso.com"}),
        Row("users of numbers", "POST", assign, {"users": [1]}),
        Row("users of null", "POST", assign, {"users": [None]}),
        Row("users of objects", "POST", assign, {"users": [{"id": "x"}]}),
        Row("empty user ref", "POST", assign, {"users": [""]}),
        Row("nobody named", "POST", assign, {}),
        Row("nobody named (lists)", "POST", assign, {"users": [], "groups": []}),
        Row("groups a string", "POST", unassign, {"groups": "g"}),
        Row("from missing", "POST", reassign, {"to": "a@contoso.com"}),
        Row("from equals to", "POST", reassign, {"from": fx.user, "to": fx.upn}),
        Row("members a list", "POST", groups, {"displayName": "G", "members": []}),
        Row("members.users a string", "POST", members, {"users": "x"}),
        Row("no members named", "POST", members, {}),
        Row("group name number", "POST", groups, {"displayName": 7}),
        Row("group name blank", "POST", groups, {"displayName": "   "}),
        Row("role number", "POST", tokens, {"role": 1}),
        Row("role unknown", "POST", tokens, {"role": "superuser"}),
        Row("role operator from a tenant admin", "POST", tokens, {"role": "operator"}),
        Row("jwksUri not http", "PATCH", tenant, {"jwksUri": "ftp://keys.example/jwks"}),
        Row("issuer not a URL", "PATCH", tenant, {"issuer": "contoso"}),
        Row("tenant name number", "PATCH", tenant, {"name": 5}),
        Row("slug upper case", "POST", const("/v1/tenants"), {"slug": "BAD", "name": "x"}, role="operator"),
        Row("slug with space", "POST", const("/v1/tenants"), {"slug": "a b", "name": "x"}, role="operator"),
        Row(
            "trialDays negative",
            "POST",
            const(f"/v1/products/{PRODUCT}/plans"),
            {"id": "p-neg", "name": "x", "spIdentifier": "p.neg", "trialDays": -1},
            role="operator",
        ),
        Row(
            "product id with slash",
            "POST",
            const("/v1/products"),
            {"id": "a/b", "name": "x", "audience": "api://ab"},
            role="operator",
        ),
    ]
    run_table(api, fx, rows)


def test_json_types_are_not_coerced(api, fx):
    """A string is not a number and a number is not a boolean: SPEC section 2 refuses wrong types (400)
    rather than guessing (`"quantity": true` must not buy a seat, `"allowPartial": "no"` must not be
    read as anything)."""
    rows = [
        Row("quantity as string", "POST", subs, {"planId": PLAN, "quantity": "5"}),
        Row("quantity as boolean", "POST", subs, {"planId": PLAN, "quantity": True}),
        Row("autoRenew as string", "POST", subs, {"planId": PLAN, "quantity": 1, "autoRenew": "yes"}),
        Row("trial as string", "POST", subs, {"planId": PLAN, "quantity": 1, "trial": "true"}),
        Row("quantity as string on patch", "PATCH", sub, {"quantity": "6"}),
        Row("force as string", "PATCH", sub, {"quantity": 6, "force": "yes"}),
        Row("active as string", "PATCH", user, {"active": "false"}),
        Row("active as number", "PATCH", user, {"active": 0}),
        Row("allowPartial as string", "POST", assign, {"users": [fx.upn], "allowPartial": "yes"}),
        Row("dryRun as number", "POST", assign, {"users": [fx.upn], "dryRun": 1}),
        Row(
            "trialDays as string",
            "POST",
            const(f"/v1/products/{PRODUCT}/plans"),
            {"id": "p-str", "name": "x", "spIdentifier": "p.str", "trialDays": "7"},
            role="operator",
        ),
    ]
    run_table(api, fx, rows)


# ---------------------------------------------------------------- unknown fields, server-owned fields (400)


def test_unknown_fields_are_400(api, fx):
    rows = [
        Row("user nickname", "POST", users, {"userPrincipalName": "n@contoso.com", "nickname": "x"}),
        Row("user patch color", "PATCH", user, {"color": "red"}),
        Row("group owner", "POST", groups, {"displayName": "G", "owner": "x"}),
        Row("members admins", "POST", groups, {"displayName": "G", "members": {"users": [], "admins": []}}),
        Row("member add extra", "POST", members, {"users": [fx.user], "role": "owner"}),
        Row("subscription seats", "POST", subs, {"planId": PLAN, "quantity": 1, "seats": 5}),
        Row("subscription patch planId", "PATCH", sub, {"planId": "innofalls-charts-basic"}),
        Row("assign planId", "POST", assign, {"users": [fx.user], "planId": PLAN}),
        Row("assign force", "POST", assign, {"users": [fx.user], "force": True}),
        Row("unassign allowPartial", "POST", unassign, {"users": [fx.user], "allowPartial": True}),
        Row("reassign force", "POST", reassign, {"from": fx.user, "to": fx.other_user, "force": True}),
        Row("tenant slug change", "PATCH", tenant, {"slug": "renamed"}),
        Row("token scopes", "POST", tokens, {"role": "reader", "scopes": ["all"]}),
        Row(
            "product owner",
            "POST",
            const("/v1/products"),
            {"id": "px", "name": "x", "audience": "api://px", "owner": "me"},
            role="operator",
        ),
        Row(
            "plan productId",
            "POST",
            const(f"/v1/products/{PRODUCT}/plans"),
            {"id": "pl-x", "name": "x", "spIdentifier": "pl.x", "productId": "other"},
            role="operator",
        ),
    ]
    run_table(api, fx, rows)


def test_snake_case_field_names_are_unknown_fields(api, fx):
    """The API's fields are camelCase (SPEC section 2); their snake_case spellings are not fields of
    the API and are refused like any unknown field."""
    rows = [
        Row("user_principal_name", "POST", users, {"user_principal_name": "snake@contoso.com"}),
        Row("display_name on patch", "PATCH", user, {"display_name": "Snake"}),
        Row("allow_partial", "POST", assign, {"users": [fx.user], "allow_partial": True}),
        Row("plan_id", "POST", subs, {"plan_id": PLAN, "quantity": 1}),
        Row("jwks_uri", "PATCH", tenant, {"jwks_uri": "https://idp.example/keys"}),
    ]
    run_table(api, fx, rows)


def test_fields_the_server_owns_are_400(api, fx):
    now = "2026-01-01T00:00:00Z"
    rows = [
        Row(
            "user id",
            "POST",
            users,
            {"userPrincipalName": "own1@contoso.com", "id": "11111111-1111-1111-1111-111111111111"},
        ),
        Row("user createdAt", "POST", users, {"userPrincipalName": "own2@contoso.com", "createdAt": now}),
        Row("user updatedAt", "POST", users, {"userPrincipalName": "own3@contoso.com", "updatedAt": now}),
        Row("user patch id", "PATCH", user, {"id": "11111111-1111-1111-1111-111111111111"}),
        Row("user patch createdAt", "PATCH", user, {"createdAt": now}),
        Row("group id", "POST", groups, {"displayName": "Own", "id": "22222222-2222-2222-2222-222222222222"}),
        Row("group createdAt", "POST", groups, {"displayName": "Own", "createdAt": now}),
        Row("group patch updatedAt", "PATCH", group, {"updatedAt": now}),
        Row(
            "subscription id",
            "POST",
            subs,
            {"planId": PLAN, "quantity": 1, "id": "33333333-3333-3333-3333-333333333333"},
        ),
        Row("subscription createdAt", "POST", subs, {"planId": PLAN, "quantity": 1, "createdAt": now}),
        Row("subscription source", "POST", subs, {"planId": PLAN, "quantity": 1, "source": "marketplace"}),
        Row("subscription externalId", "POST", subs, {"planId": PLAN, "quantity": 1, "externalId": "mkt-1"}),
        Row("subscription trialEndsAt", "POST", subs, {"planId": PLAN, "quantity": 1, "trialEndsAt": now}),
        Row("subscription patch id", "PATCH", sub, {"id": "x"}),
        Row(
            "tenant id",
            "POST",
            const("/v1/tenants"),
            {"slug": "owned", "name": "x", "id": "44444444-4444-4444-4444-444444444444"},
            role="operator",
        ),
        Row(
            "tenant createdAt",
            "POST",
            const("/v1/tenants"),
            {"slug": "owned2", "name": "x", "createdAt": now},
            role="operator",
        ),
        Row("tenant patch id", "PATCH", tenant, {"id": "x"}),
        Row("token secret", "POST", tokens, {"role": "reader", "secret": "ld_chosen"}),
        Row("token prefix", "POST", tokens, {"role": "reader", "prefix": "ld_x"}),
        Row("token createdBy", "POST", tokens, {"role": "reader", "createdBy": "someone"}),
        Row("token revokedAt", "POST", tokens, {"role": "reader", "revokedAt": now}),
        Row("assign counters", "POST", assign, {"users": [fx.user], "needed": 0, "available": 99}),
        Row(
            "product createdAt",
            "POST",
            const("/v1/products"),
            {"id": "po", "name": "x", "audience": "api://po", "createdAt": now},
            role="operator",
        ),
    ]
    for r in rows:
        r.expect = (400,)
    run_table(api, fx, rows)


# ---------------------------------------------------------------- oversize bodies (413)


def _padded(body: dict[str, Any], field: str, size: int = MIB + 1024) -> bytes:
    return json.dumps({**body, field: "x" * size}).encode()


def test_bodies_over_1_mib_are_413(api, fx):
    rows = [
        Row("user", "POST", users, raw=_padded({"userPrincipalName": "big@contoso.com"}, "displayName")),
        Row("user patch", "PATCH", user, raw=_padded({}, "displayName")),
        Row("group", "POST", groups, raw=_padded({}, "displayName")),
        Row("tenant patch", "PATCH", tenant, raw=_padded({}, "name")),
        Row(
            "assign",
            "POST",
            assign,
            raw=json.dumps({"users": [f"u{i:07d}@contoso.com" for i in range(60_000)]}).encode(),
        ),
        Row(
            "members",
            "POST",
            members,
            raw=json.dumps({"users": [f"u{i:07d}@contoso.com" for i in range(60_000)]}).encode(),
        ),
        Row("tokens", "POST", tokens, raw=_padded({"role": "reader"}, "name")),
        Row(
            "products",
            "POST",
            const("/v1/products"),
            raw=_padded({"id": "big", "audience": "api://big"}, "name"),
            role="operator",
        ),
    ]
    for r in rows:
        assert r.raw is not None and len(r.raw) > MIB
        r.expect, r.code = (413,), "body_too_large"
    run_table(api, fx, rows)


def test_a_streamed_body_over_1_mib_without_content_length_is_413(api, fx):
    """The limit holds for chunked bodies too, not only for an honest Content-Length."""

    def stream() -> Any:
        yield b'{"userPrincipalName": "chunked@contoso.com", "displayName": "'
        for _ in range(1100):
            yield b"x" * 1024
        yield b'"}'

    unchanged = Unchanged(api)
    r = lenient(api).post(
        f"/v1/tenants/{fx.t}/users",
        content=stream(),
        headers={**bearer(api.tokens["global_admin"]), "Content-Type": "application/json"},
    )
    assert "content-length" not in r.request.headers
    verdict = _judge(r, Row("chunked", "POST", users, expect=(413,), code="body_too_large"))
    assert verdict is None, verdict
    unchanged.check("chunked oversize body")


def test_a_body_just_under_1_mib_is_not_refused_for_its_size(api, fx):
    body = json.dumps({"users": [fx.user] * 24_000}).encode()
    assert 900_000 < len(body) < MIB
    r = lenient(api).post(
        f"/v1/tenants/{fx.t}/licenses/{PLAN}/assign",
        content=body,
        headers={**bearer(api.tokens["global_admin"]), "Content-Type": "application/json"},
    )
    assert r.status_code != 413 and r.status_code < 500, r.text[:300]


# ---------------------------------------------------------------- invalid ids in paths (404 / 422)
# A NUL anywhere in the URL makes it malformed: 400 before any lookup (SPEC section 2: 400 malformed).


def test_invalid_ids_in_paths_are_4xx(api, fx):
    t = "/v1/tenants"
    rows = [
        Row("tenant unknown slug", "GET", const(f"{t}/nope"), expect=(404,), role="operator"),
        Row("tenant too long", "GET", const(f"{t}/{'x' * 101}"), expect=(404, 422), role="operator"),
        Row("tenant NUL", "GET", const(f"{t}/%00"), expect=(400,), role="operator"),
        Row("tenant bad UTF-8", "GET", const(f"{t}/%FF"), expect=(404, 422), role="operator"),
        Row("user not a uuid", "GET", lambda f: f"{t}/{f.t}/users/not-a-uuid", expect=(404,)),
        Row(
            "user zero uuid",
            "GET",
            lambda f: f"{t}/{f.t}/users/00000000-0000-0000-0000-000000000000",
            expect=(404,),
        ),
        Row("user too long", "GET", lambda f: f"{t}/{f.t}/users/{'x' * 321}", expect=(404, 422)),
        Row("user of fabrikam", "GET", lambda f: f"{t}/{f.t}/users/{f.other_user}", expect=(404,)),
        Row("user NUL", "GET", lambda f: f"{t}/{f.t}/users/%00", expect=(400,)),
        Row("user RTL override", "GET", lambda f: f"{t}/{f.t}/users/%E2%80%AEmoc.osotnoc@a", expect=(404,)),
        Row("user traversal", "GET", lambda f: f"{t}/{f.t}/users/..%2F..%2F..%2Fv1%2Ftenants", expect=(404,)),
        Row("user licenses NUL", "GET", lambda f: f"{t}/{f.t}/users/%00/licenses", expect=(400,)),
        Row("delete user NUL", "DELETE", lambda f: f"{t}/{f.t}/users/%00", expect=(400,)),
        Row(
            "patch user unknown",
            "PATCH",
            lambda f: f"{t}/{f.t}/users/ghost@contoso.com",
            {"displayName": "x"},
            expect=(404,),
        ),
        Row("group not a uuid", "GET", lambda f: f"{t}/{f.t}/groups/not-a-uuid", expect=(404,)),
        Row("group too long", "GET", lambda f: f"{t}/{f.t}/groups/{'x' * 37}", expect=(404, 422)),
        Row("group NUL", "GET", lambda f: f"{t}/{f.t}/groups/%00", expect=(400,)),
        Row("group members NUL", "GET", lambda f: f"{t}/{f.t}/groups/%00/members", expect=(400,)),
        Row("member NUL", "DELETE", lambda f: f"{t}/{f.t}/groups/{f.group}/members/%00", expect=(400,)),
        Row(
            "member unknown",
            "DELETE",
            lambda f: f"{t}/{f.t}/groups/{f.group}/members/{f.user}",
            expect=(404,),
        ),
        Row("subscription not a uuid", "GET", lambda f: f"{t}/{f.t}/subscriptions/nope", expect=(404,)),
        Row("subscription NUL", "GET", lambda f: f"{t}/{f.t}/subscriptions/%00", expect=(400,)),
        Row(
            "subscription too long",
            "PATCH",
            lambda f: f"{t}/{f.t}/subscriptions/{'x' * 37}",
            {"quantity": 3},
            expect=(404, 422),
        ),
        Row("plan unknown", "GET", lambda f: f"{t}/{f.t}/licenses/nope", expect=(404,)),
        Row("plan NUL", "GET", lambda f: f"{t}/{f.t}/licenses/%00", expect=(400,)),
        Row("plan NUL users", "GET", lambda f: f"{t}/{f.t}/licenses/%00/users", expect=(400,)),
        Row(
            "plan too long",
            "POST",
            lambda f: f"{t}/{f.t}/licenses/{'p' * 64}/assign",
            {"users": [fx.user]},
            expect=(404, 422),
        ),
        Row("token unknown", "DELETE", lambda f: f"{t}/{f.t}/tokens/nope", expect=(404,)),
        Row("token NUL", "DELETE", lambda f: f"{t}/{f.t}/tokens/%00", expect=(400,)),
        Row(
            "product unknown",
            "POST",
            const("/v1/products/nope/plans"),
            {"id": "pl-u", "name": "x", "spIdentifier": "pl.u"},
            expect=(404,),
            role="operator",
        ),
    ]
    run_table(api, fx, rows)


def test_invalid_ids_in_bodies_are_4xx(api, fx):
    rows = [
        Row("assign NUL user", "POST", assign, {"users": ["\u0000"]}, expect=(404, 422)),
        Row("assign NUL group", "POST", assign, {"groups": ["\u0000"]}, expect=(404, 422)),
        Row("assign long user", "POST", assign, {"users": ["x" * 400]}, expect=(404, 422)),
        Row("assign unknown group", "POST", assign, {"groups": ["not-a-group"]}, expect=(404,)),
        Row("assign fabrikam user", "POST", assign, {"users": [fx.other_user]}, expect=(404,)),
        Row("unassign NUL", "POST", unassign, {"users": ["\u0000"]}, expect=(404, 422)),
        Row("unassign NUL group", "POST", unassign, {"groups": ["\u0000"]}, expect=(404, 422)),
        Row(
            "reassign NUL from",
            "POST",
            reassign,
            {"from": "\u0000", "to": "a@contoso.com"},
            expect=(404, 422),
        ),
        Row("reassign NUL to", "POST", reassign, {"from": fx.user, "to": "\u0000"}, expect=(404, 422)),
        Row("members NUL user", "POST", members, {"users": ["\u0000"]}, expect=(404, 422)),
        Row("members NUL group", "POST", members, {"groups": ["\u0000"]}, expect=(404, 422)),
        Row(
            "group create NUL member",
            "POST",
            groups,
            {"displayName": "G", "members": {"users": ["\u0000"]}},
            expect=(404, 422),
        ),
        Row("subscription NUL plan", "POST", subs, {"planId": "\u0000", "quantity": 1}, expect=(404, 422)),
    ]
    run_table(api, fx, rows)


# ---------------------------------------------------------------- cursors and limits

_PAGED = {
    "users": lambda f: f"/v1/tenants/{f.t}/users",
    "users search": lambda f: f"/v1/tenants/{f.t}/users?search=user",
    "groups": lambda f: f"/v1/tenants/{f.t}/groups",
    "members": lambda f: f"/v1/tenants/{f.t}/groups/{f.group}/members",
    "transitive members": lambda f: f"/v1/tenants/{f.t}/groups/{f.group}/members?transitive=true",
    "subscriptions": lambda f: f"/v1/tenants/{f.t}/subscriptions",
    "licensed users": lambda f: f"/v1/tenants/{f.t}/licenses/{PLAN}/users",
    "plan groups": lambda f: f"/v1/tenants/{f.t}/licenses/{PLAN}/groups",
    "search": lambda f: f"/v1/tenants/{f.t}/directory/search?q=user",
    "audit": lambda f: f"/v1/tenants/{f.t}/audit",
    "tokens": lambda f: f"/v1/tenants/{f.t}/tokens",
}


def _with(path: Callable[[Fx], str], query: str) -> Callable[[Fx], str]:
    return lambda f: path(f) + ("&" if "?" in path(f) else "?") + query


def test_garbled_cursors_are_400_invalid_cursor(api, fx):
    garbled = {
        "not base64": "!!!",
        "base64 of text": "aGVsbG8",
        "empty list": cursor_of([]),
        "object": cursor_of({"a": 1}),
        "string": cursor_of("s"),
        "nulls": cursor_of([None, None]),
        "five keys": cursor_of(["a", "b", "c", "d", "e"]),
        "floats": cursor_of([1.5, 2.5]),
    }
    rows = [
        Row(f"{where}: {name}", "GET", _with(path, f"cursor={cursor}"), expect=(400,), code="invalid_cursor")
        for where, path in _PAGED.items()
        for name, cursor in garbled.items()
    ]
    rows.append(
        Row(
            "tenants: not base64",
            "GET",
            const("/v1/tenants?cursor=!!!"),
            expect=(400,),
            code="invalid_cursor",
            role="operator",
        )
    )
    rows.append(Row("too long", "GET", _with(_PAGED["users"], "cursor=" + "x" * 501), expect=(400, 422)))
    run_table(api, fx, rows)


def test_forged_cursors_never_cause_a_server_error(api, fx):
    """Well-formed cursors with keys this service never issues (wrong types, NUL, huge numbers, a date
    that is not a date): a 4xx problem document or, where the key is merely unusual, a page; never a 5xx."""
    forged = {
        "numbers": cursor_of([1, 2]),
        "words": cursor_of(["x", "y"]),
        "boolean first": cursor_of([True, "x"]),
        "NUL strings": cursor_of(["\u0000", "\u0000"]),
        "huge number": cursor_of([10**30, "x"]),
        "date with NUL": cursor_of(["2026-01-01T00:00:00\u0000", "x"]),
        "date and number": cursor_of(["2026-01-01T00:00:00", 5]),
        "one number": cursor_of([1]),
        "one NUL": cursor_of(["\u0000"]),
        "search-shaped words": cursor_of(["x", "y", "z", "w"]),
        "search-shaped huge rank": cursor_of(["x", 10**30, "user", "w"]),
        "search-shaped NUL": cursor_of(["\u0000", 1, "user", "\u0000"]),
    }
    client = lenient(api)
    headers = bearer(api.tokens["global_admin"])
    unchanged = Unchanged(api)
    wrong = []
    for where, path in _PAGED.items():
        for name, cursor in forged.items():
            url = _with(path, f"cursor={cursor}")(fx)
            r = client.get(url, headers=headers)
            if r.status_code == 200:
                body = r.json()
                if set(body) != {"items", "nextCursor"}:
                    wrong.append(f"[{where}: {name}] 200 without a page: {r.text[:200]}")
                continue
            verdict = _judge(r, Row(name, "GET", const(url)))
            if verdict:
                wrong.append(f"[{where}: {name}] {verdict}")
    unchanged.check("forged cursors")
    assert not wrong, f"{len(wrong)} wrong:\n" + "\n".join(wrong)


def test_limits_out_of_range_are_4xx(api, fx):
    limits = ["0", "-1", "1001", "100000000000000000000000", "abc", "1e3", "1.5", ""]
    rows = [
        Row(f"{where}: limit={limit!r}", "GET", _with(path, f"limit={limit}"), expect=(400, 422))
        for where, path in _PAGED.items()
        for limit in limits
    ]
    rows += [
        Row(
            f"tenants: limit={limit!r}",
            "GET",
            const(f"/v1/tenants?limit={limit}"),
            expect=(400, 422),
            role="operator",
        )
        for limit in limits
    ]
    run_table(api, fx, rows)


def test_other_query_values_out_of_range_are_4xx(api, fx):
    lic = lambda f: f"/v1/tenants/{f.t}/licenses/{PLAN}/users"  # noqa: E731
    search = lambda f: f"/v1/tenants/{f.t}/directory/search"  # noqa: E731
    rows = [
        Row("state unknown", "GET", _with(lic, "state=Bogus")),
        Row("source unknown", "GET", _with(lic, "source=inherited")),
        Row("idleDays negative", "GET", _with(lic, "idleDays=-1")),
        Row("idleDays huge", "GET", _with(lic, "idleDays=100000")),
        Row("idleDays word", "GET", _with(lic, "idleDays=week")),
        Row("transitive maybe", "GET", _with(_PAGED["members"], "transitive=maybe")),
        Row("search q missing", "GET", search),
        Row("search q empty", "GET", _with(search, "q=")),
        Row("search q 10 kB", "GET", _with(search, f"q={TEN_KB}")),
        Row("search q NUL", "GET", _with(search, "q=%00")),
        Row("search types unknown", "GET", _with(search, "q=a&types=printer")),
        Row("search types empty", "GET", _with(search, "q=a&types=")),
        Row("users search 10 kB", "GET", _with(users, f"search={TEN_KB}")),
        Row("users search NUL", "GET", _with(users, "search=%00")),
        Row("audit since word", "GET", _with(audit, "since=yesterday")),
        Row("audit since a number (Unix time)", "GET", _with(audit, "since=0.8160292250281812")),
        Row("audit until an integer", "GET", _with(audit, "until=1700000000")),
        Row("audit since Feb 30", "GET", _with(audit, "since=2026-02-30T00:00:00Z")),
        Row("audit until NUL", "GET", _with(audit, "until=%00")),
        Row("audit action NUL", "GET", _with(audit, "action=%00"), page_ok=True),
        Row("audit actorId NUL", "GET", _with(audit, "actorId=%00"), page_ok=True),
        Row("audit targetId NUL", "GET", _with(audit, "targetId=%00"), page_ok=True),
        Row("audit planId NUL", "GET", _with(audit, "planId=%00"), page_ok=True),
        Row("audit action 10 kB", "GET", _with(audit, f"action={TEN_KB}")),
        Row("plans productId NUL", "GET", const("/v1/plans?productId=%00"), page_ok=True),
        Row(
            "tenants externalTenantId NUL",
            "GET",
            const("/v1/tenants?externalTenantId=%00"),
            role="operator",
            page_ok=True,
        ),
        Row("subscriptions planId NUL", "GET", _with(subs, "planId=%00"), page_ok=True),
    ]
    run_table(api, fx, rows)


def test_times_at_the_edge_of_the_calendar_are_4xx(api, fx):
    """ISO-8601 times whose UTC value falls outside years 1..9999 (e.g. 0001-01-01T00:00:00+01:00)."""
    rows = [
        Row("audit since before year 1 in UTC", "GET", _with(audit, "since=0001-01-01T00:00:00%2B01:00")),
        Row("audit until after year 9999 in UTC", "GET", _with(audit, "until=9999-12-31T23:59:59-01:00")),
        Row(
            "termEndsAt before year 1 in UTC",
            "POST",
            subs,
            {"planId": PLAN, "quantity": 1, "termEndsAt": "0001-01-01T00:00:00+01:00"},
        ),
        Row(
            "termEndsAt after year 9999 in UTC",
            "POST",
            subs,
            {"planId": PLAN, "quantity": 1, "termEndsAt": "9999-12-31T23:59:59-01:00"},
        ),
        Row(
            "patch termEndsAt after year 9999 in UTC",
            "PATCH",
            sub,
            {"termEndsAt": "9999-12-31T23:59:59-01:00"},
        ),
        Row(
            "year 10000", "POST", subs, {"planId": PLAN, "quantity": 1, "termEndsAt": "10000-01-01T00:00:00Z"}
        ),
    ]
    run_table(api, fx, rows)


# ---------------------------------------------------------------- Unicode


def _raw(text: str) -> bytes:
    """JSON text as written, so that escapes like \\ud800 reach the server unchanged."""
    return text.encode()


def test_unicode_edge_cases_are_4xx(api, fx):
    rows = [
        Row(
            "NUL in displayName",
            "POST",
            users,
            {"userPrincipalName": "nul1@contoso.com", "displayName": "a\u0000b"},
        ),
        Row("NUL in upn", "POST", users, {"userPrincipalName": "nul\u0000@contoso.com"}),
        Row(
            "NUL in externalId",
            "POST",
            users,
            {"userPrincipalName": "nul2@contoso.com", "externalId": "\u0000"},
        ),
        Row(
            "ESC in displayName",
            "POST",
            users,
            {"userPrincipalName": "esc@contoso.com", "displayName": "a\u001b[31mred"},
        ),
        Row("NUL in patch", "PATCH", user, {"displayName": "\u0000"}),
        Row("NUL in group name", "POST", groups, {"displayName": "g\u0000"}),
        Row("NUL in description", "POST", groups, {"displayName": "G nul", "description": "\u0000"}),
        Row("NUL in tenant name", "PATCH", tenant, {"name": "\u0000"}),
        Row("NUL in token name", "POST", tokens, {"role": "reader", "name": "t\u0000"}),
        Row(
            "lone high surrogate",
            "POST",
            users,
            raw=_raw('{"userPrincipalName": "s1@contoso.com", "displayName": "a\\ud800b"}'),
        ),
        Row(
            "lone low surrogate",
            "POST",
            users,
            raw=_raw('{"userPrincipalName": "s2@contoso.com", "displayName": "\\udfff"}'),
        ),
        Row(
            "reversed pair",
            "POST",
            users,
            raw=_raw('{"userPrincipalName": "s3@contoso.com", "displayName": "\\udfff\\ud800"}'),
        ),
        Row("surrogate in upn", "POST", users, raw=_raw('{"userPrincipalName": "s\\ud800@contoso.com"}')),
        Row("surrogate in group", "POST", groups, raw=_raw('{"displayName": "\\ud83d"}')),
        Row("surrogate in assign ref", "POST", assign, raw=_raw('{"users": ["\\ud800"]}')),
        Row("surrogate in tenant patch", "PATCH", tenant, raw=_raw('{"name": "\\udc00"}')),
        Row("RTL override in upn", "POST", users, {"userPrincipalName": "\u202emoc.osotnoc@nna"}),
        Row(
            "only RTL marks as displayName",
            "POST",
            users,
            {"userPrincipalName": "rtl1@contoso.com", "displayName": "\u202e\u200f"},
        ),
        Row("only RTL marks as group name", "POST", groups, {"displayName": "\u200f\u202e"}),
        Row(
            "10 kB displayName",
            "POST",
            users,
            {"userPrincipalName": "long1@contoso.com", "displayName": TEN_KB},
        ),
        Row("10 kB upn", "POST", users, {"userPrincipalName": TEN_KB + "@contoso.com"}),
        Row(
            "10 kB externalId",
            "POST",
            users,
            {"userPrincipalName": "long2@contoso.com", "externalId": TEN_KB},
        ),
        Row("10 kB group name", "POST", groups, {"displayName": TEN_KB}),
        Row("10 kB description", "POST", groups, {"displayName": "Long", "description": TEN_KB}),
        Row("10 kB tenant name", "PATCH", tenant, {"name": TEN_KB}),
        Row("10 kB token name", "POST", tokens, {"role": "reader", "name": TEN_KB}),
        Row("10 kB patch displayName", "PATCH", user, {"displayName": TEN_KB}),
        Row(
            "10 kB of multi-byte",
            "POST",
            users,
            {"userPrincipalName": "long3@contoso.com", "displayName": "\u00e9" * 10_240},
        ),
        Row("10 kB of emoji", "POST", groups, {"displayName": "\U0001f600" * 2_560}),
    ]
    run_table(api, fx, rows)


def test_legitimate_unicode_names_are_kept(api, fx):
    """The other side of the table: right-to-left names with their marks, accents, emoji and the longest
    allowed names are accepted and come back as sent (NFC)."""
    client = lenient(api)
    headers = bearer(api.tokens["global_admin"])
    cases = {
        "rtl@contoso.com": "\u05e9\u05dc\u05d5\u05dd \u05db\u05d4\u05df\u200f",
        "accent@contoso.com": "Ren\u00e9e Fa\u00dfbender",
        "emoji@contoso.com": "Ann \U0001f680",
        "longest@contoso.com": "n" * 256,
    }
    for upn, name in cases.items():
        r = client.post(
            f"/v1/tenants/{fx.t}/users", json={"userPrincipalName": upn, "displayName": name}, headers=headers
        )
        assert r.status_code == 201, (upn, r.status_code, r.text[:200])
        assert r.json()["displayName"] == name
        assert client.get(f"/v1/tenants/{fx.t}/users/{upn}", headers=headers).json()["displayName"] == name
    decomposed = client.post(
        f"/v1/tenants/{fx.t}/groups", json={"displayName": "Cafe\u0301"}, headers=headers
    ).json()
    assert decomposed["displayName"] == "Caf\u00e9"


def test_no_5xx_for_headers_either(api, fx):
    client = lenient(api)
    ga = bearer(api.tokens["global_admin"])
    answers = [
        client.post(
            f"/v1/tenants/{fx.t}/users",
            json={"userPrincipalName": "k1@contoso.com"},
            headers={**ga, "Idempotency-Key": "x" * 256},
        ),
        client.post(
            f"/v1/tenants/{fx.t}/users",
            json={"userPrincipalName": "k2@contoso.com"},
            headers={**ga, "Idempotency-Key": "has space"},
        ),
        client.post(
            f"/v1/tenants/{fx.t}/users",
            json={"userPrincipalName": "k3@contoso.com"},
            headers={**ga, "Idempotency-Key": ""},
        ),
        client.get(f"/v1/tenants/{fx.t}/users", headers={**ga, "X-Request-Id": "x" * 10_000}),
        client.get(f"/v1/tenants/{fx.t}/users", headers={"Authorization": "Bearer " + "x" * 10_000}),
        client.get(
            f"/v1/tenants/{fx.t}/users",
            headers={"Authorization": "Bearer ld_\u00e9".encode()},
        ),
        client.get(f"/v1/tenants/{fx.t}/audit", headers={**ga, "Accept": "text/csv, application/json"}),
        client.get(f"/v1/tenants/{fx.t}/audit", headers={**ga, "Accept": b"\x01text/csv"}),
        client.post(
            f"/v1/tenants/{fx.t}/users",
            content=b"{}",
            headers={**ga, "Content-Type": "application/json", "Content-Length": "abc"},
        ),
    ]
    for r in answers:
        assert r.status_code < 500, (r.request.headers, r.status_code, r.text[:200])
    for r in answers[:3]:
        assert r.status_code == 400 and r.json()["code"] == "invalid_idempotency_key"
    assert page_has(client, fx, ga, "k1@contoso.com") is False


def page_has(client: Any, fx: Fx, headers: dict[str, str], upn: str) -> bool:
    return client.get(f"/v1/tenants/{fx.t}/users/{upn}", headers=headers).status_code == 200
