"""SCIM 2.0 through the app (RFC 7644): filters translated to SQL, paging, sorting, PATCH with Entra's and
Okta's quirks, ETags, error documents, who may call it, and what each write does to licenses and audit."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from licensedesk.audit import service as audit
from licensedesk.auth import service as auth
from licensedesk.directory import service as directory
from licensedesk.licensing import service as licensing
from tests.scim.conftest import GROUP, LIST, USER, assert_scim_error
from tests.world import PLAN


def ids(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["schemas"] == [LIST]
    return [r["id"] for r in body.get("Resources", [])]


@pytest.fixture
def people(scim):  # type: ignore[no-untyped-def]
    """Four users: alice (external a-1), bob (a-2, inactive), carol (no display name), dave."""
    alice = scim.user("alice@contoso.com", displayName="Alice Archer", externalId="a-1")
    bob = scim.user("bob@contoso.com", displayName="Bob Baker", externalId="a-2", active=False)
    carol = scim.user("carol@contoso.com")
    dave = scim.user("dave@fabrikam.com", displayName="Dave Dunn", externalId="x-9")
    return {"alice": alice["id"], "bob": bob["id"], "carol": carol["id"], "dave": dave["id"]}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ('userName eq "ALICE@contoso.com"', ["alice"]),
        ('userName ne "alice@contoso.com"', ["bob", "carol", "dave"]),
        ('userName co "fabrikam"', ["dave"]),
        ('userName sw "b"', ["bob"]),
        ('userName ew ".com"', ["alice", "bob", "carol", "dave"]),
        ('externalId eq "a-2"', ["bob"]),
        ('externalId eq "A-2"', []),  # externalId is case-exact
        ("externalId pr", ["alice", "bob", "dave"]),
        ("not (externalId pr)", ["carol"]),
        ('displayName eq "alice archer"', ["alice"]),
        ('displayName co "ker"', ["bob"]),
        ("displayName pr", ["alice", "bob", "dave"]),
        ("active eq false", ["bob"]),
        ('active eq "False"', ["bob"]),
        ('active eq true and externalId sw "a-"', ["alice"]),
        ('userName sw "c" or displayName sw "dave"', ["carol", "dave"]),
        ('(userName sw "a" or userName sw "b") and active eq true', ["alice"]),
        ('userName co "%"', []),  # LIKE wildcards are matched literally
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bob@contoso.com"', ["bob"]),
    ],
)
def test_user_filters_are_answered_by_the_database(scim, people, flt, expected):  # type: ignore[no-untyped-def]
    found = ids(scim.get("/Users", params={"filter": flt, "sortBy": "userName"}))
    assert found == [people[name] for name in expected]


def test_filters_run_as_sql_not_over_loaded_rows(scim, people):  # type: ignore[no-untyped-def]
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    engine = scim.world.ctx.db.engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert ids(scim.get("/Users", params={"filter": 'userName eq "dave@fabrikam.com"'})) == [
            people["dave"]
        ]
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    reads = [s for s in statements if "FROM users" in s and "upn_key" in s.split("WHERE", 1)[-1]]
    assert reads, statements  # the condition is in the SQL, not applied to rows afterwards


def test_unsupported_filters_are_refused_with_invalid_filter(scim, people):  # type: ignore[no-untyped-def]
    assert_scim_error(scim.get("/Users", params={"filter": 'emails.value eq "a@b.c"'}), 400, "invalidFilter")
    assert_scim_error(scim.get("/Users", params={"filter": "userName eq"}), 400, "invalidFilter")
    assert_scim_error(
        scim.get("/Users", params={"filter": 'meta.created gt "yesterday"'}), 400, "invalidFilter"
    )


def test_pagination_and_sorting(scim, people):  # type: ignore[no-untyped-def]
    by_name = [people[n] for n in ("alice", "bob", "carol", "dave")]
    page = scim.get("/Users", params={"startIndex": 2, "count": 2, "sortBy": "userName"}).json()
    assert page["totalResults"] == 4 and page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert [r["id"] for r in page["Resources"]] == by_name[1:3]
    desc = ids(scim.get("/Users", params={"sortBy": "userName", "sortOrder": "descending"}))
    assert desc == list(reversed(by_name))
    only_total = scim.get("/Users", params={"count": 0}).json()
    assert only_total["totalResults"] == 4 and not only_total.get("Resources")
    beyond = scim.get("/Users", params={"startIndex": 10}).json()
    assert beyond["totalResults"] == 4 and not beyond.get("Resources")


def test_group_filters_by_member_and_name(scim, people):  # type: ignore[no-untyped-def]
    sales = scim.group("Sales", [people["alice"], people["bob"]])["id"]
    ops = scim.group("Ops", [people["carol"]], externalId="g-ops")["id"]
    empty = scim.group("Empty")["id"]
    assert ids(scim.get("/Groups", params={"filter": f'members.value eq "{people["bob"]}"'})) == [sales]
    assert ids(scim.get("/Groups", params={"filter": f'members[value eq "{people["carol"]}"]'})) == [ops]
    assert sorted(ids(scim.get("/Groups", params={"filter": "members pr"}))) == sorted([sales, ops])
    assert ids(scim.get("/Groups", params={"filter": 'displayName eq "sales"'})) == [sales]
    assert ids(scim.get("/Groups", params={"filter": 'externalId eq "g-ops"'})) == [ops]
    assert ids(scim.get("/Groups", params={"filter": "not (members pr)"})) == [empty]
    lean = scim.get("/Groups", params={"filter": 'displayName eq "Sales"', "excludedAttributes": "members"})
    assert "members" not in lean.json()["Resources"][0]


def test_entra_patch_quirks(scim, people):  # type: ignore[no-untyped-def]
    uid = people["alice"]
    r = scim.patch(
        f"/Users/{uid}",
        [
            {"op": "Replace", "path": "displayName", "value": "Alice Renamed"},
            {"op": "Add", "path": "externalId", "value": "a-1-new"},
            {"op": "Replace", "path": "active", "value": "False"},
        ],
    )
    assert r.status_code in (200, 204), r.text
    user = directory.get_user(scim.world.ctx, scim.world.tenant, uid)
    assert (user.display_name, user.external_id, user.active) == ("Alice Renamed", "a-1-new", False)
    # a replace without a path, with PascalCase attribute names
    r = scim.patch(f"/Users/{uid}", [{"op": "replace", "value": {"DisplayName": "Alice A", "Active": True}}])
    assert r.status_code in (200, 204), r.text
    user = directory.get_user(scim.world.ctx, scim.world.tenant, uid)
    assert (user.display_name, user.active) == ("Alice A", True)


def test_group_membership_patch_add_remove_and_remove_all(scim, people):  # type: ignore[no-untyped-def]
    gid = scim.group("Sales")["id"]
    add = [{"op": "Add", "path": "members", "value": [{"value": people["alice"]}, {"value": people["bob"]}]}]
    assert scim.patch(f"/Groups/{gid}", add).status_code in (200, 204)
    members = {m["value"] for m in scim.get(f"/Groups/{gid}").json()["members"]}
    assert members == {people["alice"], people["bob"]}
    remove = [{"op": "Remove", "path": f'members[value eq "{people["alice"]}"]'}]
    assert scim.patch(f"/Groups/{gid}", remove).status_code in (200, 204)
    assert [m["value"] for m in scim.get(f"/Groups/{gid}").json()["members"]] == [people["bob"]]
    assert scim.patch(f"/Groups/{gid}", [{"op": "Remove", "path": "members"}]).status_code in (200, 204)
    assert "members" not in scim.get(f"/Groups/{gid}").json()
    # nested groups are members too; a cycle is refused
    inner = scim.group("Inner")["id"]
    nest = [{"op": "add", "path": "members", "value": [{"value": inner}]}]
    assert scim.patch(f"/Groups/{gid}", nest).status_code in (200, 204)
    cycle = [{"op": "add", "path": "members", "value": [{"value": gid}]}]
    assert_scim_error(scim.patch(f"/Groups/{inner}", cycle), 409)
    unknown = [{"op": "add", "path": "members", "value": [{"value": "no-such-id"}]}]
    assert_scim_error(scim.patch(f"/Groups/{gid}", unknown), 400, "invalidValue")


def test_etags_and_if_match(scim, people):  # type: ignore[no-untyped-def]
    uid = people["alice"]
    first = scim.get(f"/Users/{uid}")
    etag = first.headers["etag"]
    assert etag == first.json()["meta"]["version"]
    assert scim.get(f"/Users/{uid}", headers={"If-None-Match": etag}).status_code == 304
    ok = scim.patch(
        f"/Users/{uid}", [{"op": "replace", "path": "displayName", "value": "A"}], headers={"If-Match": etag}
    )
    assert ok.status_code in (200, 204), ok.text
    assert scim.get(f"/Users/{uid}").headers["etag"] != etag
    stale = scim.patch(
        f"/Users/{uid}", [{"op": "replace", "path": "displayName", "value": "B"}], headers={"If-Match": etag}
    )
    assert_scim_error(stale, 412)
    assert directory.get_user(scim.world.ctx, scim.world.tenant, uid).display_name == "A"
    assert_scim_error(scim.delete(f"/Users/{uid}", headers={"If-Match": etag}), 412)


def test_refusals_are_scim_error_documents(scim, people):  # type: ignore[no-untyped-def]
    body = {"schemas": [USER], "userName": "alice@contoso.com"}
    assert_scim_error(scim.post("/Users", body), 409, "uniqueness")
    dup_external = {"schemas": [USER], "userName": "new@contoso.com", "externalId": "a-1"}
    assert_scim_error(scim.post("/Users", dup_external), 409, "uniqueness")
    assert_scim_error(
        scim.post("/Users", {"schemas": [USER], "userName": "not-an-email"}), 400, "invalidValue"
    )
    assert_scim_error(scim.post("/Users", {"schemas": [USER]}), 400)
    assert_scim_error(scim.get("/Users/00000000-0000-0000-0000-000000000000"), 404)
    assert_scim_error(scim.post("/Groups", {"schemas": [GROUP], "displayName": ""}), 400)
    bad_json = scim.call("POST", "/Users", content=b"{", headers={"Content-Type": "application/scim+json"})
    assert_scim_error(bad_json, 400)
    assert_scim_error(scim.call("POST", "/Bulk", {"Operations": []}), 501)
    assert directory.count_users(scim.world.ctx, scim.world.tenant) == 4


def test_body_size_is_limited(scim):  # type: ignore[no-untyped-def]
    big = (
        b'{"schemas": ["'
        + USER.encode()
        + b'"], "userName": "a@b.c", "x": "'
        + b"a" * (11 * 1024 * 1024)
        + b'"}'
    )
    r = scim.call("POST", "/Users", content=big, headers={"Content-Type": "application/scim+json"})
    assert r.status_code == 413


def test_only_scim_tokens_of_the_tenant_may_call(scim, people):  # type: ignore[no-untyped-def]
    ctx = scim.world.ctx
    assert_scim_error(scim.client.get(scim.base + "/Users"), 401)
    bad = scim.client.get(scim.base + "/Users", headers={"Authorization": "Bearer ld_nope"})
    assert_scim_error(bad, 401)
    for role in ("global_admin", "license_admin", "reader"):
        token = auth.create_token(ctx, role, tenant_ref=scim.world.tenant)[1]
        r = scim.client.get(scim.base + "/Users", headers={"Authorization": f"Bearer {token}"})
        assert_scim_error(r, 403)
    operator = auth.create_token(ctx, "operator")[1]
    assert_scim_error(
        scim.client.get(scim.base + "/Users", headers={"Authorization": f"Bearer {operator}"}), 403
    )
    # another tenant's scim token: 404, as for a tenant that does not exist
    from tests.world import make_world

    other = make_world(ctx, "fabrikam")
    other_token = auth.create_token(ctx, "scim", tenant_ref=other.tenant)[1]
    r = scim.client.get(scim.base + "/Users", headers={"Authorization": f"Bearer {other_token}"})
    assert_scim_error(r, 404)
    r = scim.client.get("/scim/v2/nobody/Users", headers={"Authorization": f"Bearer {other_token}"})
    assert_scim_error(r, 404)
    # and a scim token may do nothing else
    r = scim.client.get(
        f"/v1/tenants/{scim.world.tenant}/users", headers={"Authorization": f"Bearer {scim.token}"}
    )
    assert r.status_code == 403


def test_writes_are_audited_with_the_scim_actor(scim):  # type: ignore[no-untyped-def]
    uid = scim.user("eve@contoso.com")["id"]
    scim.patch(f"/Users/{uid}", [{"op": "replace", "path": "active", "value": False}])
    events = audit.query(scim.world.ctx, scim.world.tenant, target_id=uid).items
    assert {e.action for e in events} >= {"user.created", "user.deactivated"}
    assert all(e.actor["type"] == "scim" and e.actor["name"] == "Entra provisioning" for e in events)


def test_delete_removes_user_and_group(scim, people):  # type: ignore[no-untyped-def]
    gid = scim.group("Sales", [people["alice"]])["id"]
    assert scim.delete(f"/Users/{people['alice']}").status_code == 204
    assert_scim_error(scim.get(f"/Users/{people['alice']}"), 404)
    assert "members" not in scim.get(f"/Groups/{gid}").json()
    assert scim.delete(f"/Groups/{gid}").status_code == 204
    assert_scim_error(scim.get(f"/Groups/{gid}"), 404)


# ---------------------------------------------------------------- license effects


def _state(scim, uid: str) -> str | None:  # type: ignore[no-untyped-def]
    return scim.world.state(uid)


def test_license_effects_of_scim_membership_and_activity(scim):  # type: ignore[no-untyped-def]
    w = scim.world
    w.buy(2)
    first, second, third = (scim.user(f"u{i}@contoso.com")["id"] for i in range(3))
    gid = scim.group("Licensed")["id"]
    licensing.assign(w.ctx, w.tenant, PLAN, groups=[gid], allow_partial=True)
    w.drain()

    # member added through SCIM -> seated
    add = [{"op": "Add", "path": "members", "value": [{"value": first}, {"value": second}]}]
    assert scim.patch(f"/Groups/{gid}", add).status_code in (200, 204)
    w.drain()
    assert [_state(scim, u) for u in (first, second)] == ["Active", "Active"]

    # a third member waits: no seat left
    assert scim.patch(
        f"/Groups/{gid}", [{"op": "add", "path": "members", "value": [{"value": third}]}]
    ).status_code in (200, 204)
    w.drain()
    assert _state(scim, third) == "Error"

    # Entra deactivates with active "False": the seat is freed and the waiting user gets it
    r = scim.patch(f"/Users/{first}", [{"op": "Replace", "path": "active", "value": "False"}])
    assert r.status_code in (200, 204)
    w.drain()
    assert (_state(scim, first), _state(scim, third)) == ("Disabled", "Active")

    # re-activated: no seat is free, so it waits; once one frees up it is seated again
    r = scim.patch(f"/Users/{first}", [{"op": "replace", "value": {"active": True}}])
    assert r.status_code in (200, 204)
    w.drain()
    assert _state(scim, first) == "Error"
    # member removed -> seat freed (and given to the waiting, re-activated user)
    remove = [{"op": "Remove", "path": f'members[value eq "{second}"]'}]
    assert scim.patch(f"/Groups/{gid}", remove).status_code in (200, 204)
    w.drain()
    assert (_state(scim, second), _state(scim, first)) == (None, "Active")


def test_okta_deactivation_with_put_active_false(scim):  # type: ignore[no-untyped-def]
    w = scim.world
    w.buy(1)
    uid = scim.user("okta@contoso.com", displayName="Okta User")["id"]
    licensing.assign(w.ctx, w.tenant, PLAN, users=[uid])
    assert _state(scim, uid) == "Active"
    current = scim.get(f"/Users/{uid}").json()
    current["active"] = False
    del current["meta"]
    r = scim.put(f"/Users/{uid}", current)
    assert r.status_code == 200, r.text
    assert r.json()["active"] is False
    assert _state(scim, uid) == "Disabled"
    assert w.overview().available == 1
