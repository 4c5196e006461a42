"""SCIM against a real `licensedesk serve` process: the scim2-tester checks, and the request sequences
Microsoft Entra and Okta document for their SCIM provisioning, as those clients send them."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from scim2_tester import Status, check_server

from tests.scim.conftest import GROUP, LIST, PATCH, USER
from tests.scim.live import HttpxScimClient, cli, serve

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


class FreshEmails:
    """Example values for userName: the server takes only e-mail-like userPrincipalNames (SPEC section
    1), which scim2-tester cannot guess from a schema; each pick is a new address."""

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, _index: int) -> str:
        return f"{uuid.uuid4()}@example.com"


@pytest.fixture
def live(database_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], httpx.Client]]:
    with serve(database_url, tmp_path / "server.log") as (base, env):
        cli(env, "tenant", "create", "acme", "--name", "Acme")
        token = cli(env, "token", "create", "--role", "scim", "--tenant", "acme", "--name", "idp").strip()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
        with httpx.Client(base_url=f"{base}/scim/v2/acme/", headers=headers, timeout=30) as client:
            yield base, env, client


def test_scim2_tester_checks_pass_against_a_real_server(live):  # type: ignore[no-untyped-def]
    _base, _env, http = live
    client = HttpxScimClient(http)
    client.discover()
    user_model = client.get_resource_model("User")
    assert user_model is not None
    user_model.model_fields["user_name"].examples = FreshEmails()  # type: ignore[assignment]
    results = check_server(client, raise_exceptions=False)
    counts = Counter(r.status for r in results)
    bad = [
        f"{r.status.name} {r.title}: {r.reason}"
        for r in results
        if r.status not in (Status.SUCCESS, Status.COMPLIANT, Status.SKIPPED)
    ]
    assert not bad, "\n".join(bad)
    assert counts[Status.SUCCESS] >= 100, counts  # the checks really ran


def _ok(response: httpx.Response, *statuses: int) -> Any:
    assert response.status_code in statuses, response.text
    return response.json() if response.content else None


def _group_status(base: str, env: dict[str, str], tenant: str, group_id: str) -> dict[str, Any]:
    admin = cli(env, "token", "create", "--role", "global_admin", "--tenant", tenant).strip()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}) as c:
        deadline = time.monotonic() + 20
        while True:
            items = c.get(f"/v1/tenants/{tenant}/groups/{group_id}/licenses").json()["items"]
            if items and items[0]["processingState"] == "Complete":
                return items[0]
            assert time.monotonic() < deadline, items
            time.sleep(0.05)


def test_entra_provisioning_sequence(live):  # type: ignore[no-untyped-def]
    """Entra's documented sequence: look the user up by userName, create, read back by filter, update with
    PascalCase operations, add to and remove from a group, and soft-delete with active "False"."""
    _base, _env, http = live
    upn = "Test_User_1@contoso.com"
    lookup = _ok(http.get("Users", params={"filter": f'userName eq "{upn}"'}), 200)
    assert lookup["schemas"] == [LIST] and lookup["totalResults"] == 0
    created = _ok(
        http.post(
            "Users",
            json={
                "schemas": [USER, ENTERPRISE],
                "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
                "userName": upn,
                "active": True,
                "displayName": "Test User 1",
                "emails": [{"primary": True, "type": "work", "value": upn}],
                "name": {
                    "formatted": "givenName familyName",
                    "familyName": "familyName",
                    "givenName": "givenName",
                },
                ENTERPRISE: {"employeeNumber": "701984", "department": "Tour Operations"},
                "roles": [],
            },
        ),
        201,
    )
    uid = created["id"]
    assert created["userName"] == upn and created["emails"][0]["value"] == upn
    found = _ok(http.get("Users", params={"filter": f'userName eq "{upn}"'}), 200)
    assert [r["id"] for r in found["Resources"]] == [uid]
    by_external = _ok(
        http.get("Users", params={"filter": 'externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"'}), 200
    )
    assert [r["id"] for r in by_external["Resources"]] == [uid]
    _ok(
        http.patch(
            f"Users/{uid}",
            json={
                "schemas": [PATCH],
                "Operations": [
                    {"op": "Replace", "path": "displayName", "value": "Test User 1 Renamed"},
                    {"op": "Add", "path": 'emails[type eq "work"].value', "value": "renamed@contoso.com"},
                    {"op": "Replace", "path": "name.familyName", "value": "Renamed"},
                ],
            },
        ),
        200,
        204,
    )
    after = _ok(http.get(f"Users/{uid}"), 200)
    assert after["displayName"] == "Test User 1 Renamed" and after["name"]["familyName"] == "Renamed"
    assert after["emails"][0]["value"] == "renamed@contoso.com"

    group = _ok(
        http.post(
            "Groups",
            json={"schemas": [GROUP], "externalId": "8aa1a0c0", "displayName": "Group1", "members": []},
        ),
        201,
    )
    gid = group["id"]
    assert (
        _ok(
            http.get("Groups", params={"filter": 'displayName eq "Group1"', "excludedAttributes": "members"}),
            200,
        )["totalResults"]
        == 1
    )
    add = {"schemas": [PATCH], "Operations": [{"op": "Add", "path": "members", "value": [{"value": uid}]}]}
    _ok(http.patch(f"Groups/{gid}", json=add), 200, 204)
    member_check = _ok(
        http.get(
            "Groups",
            params={"filter": f'id eq "{gid}" and members eq "{uid}"', "excludedAttributes": "members"},
        ),
        200,
    )
    assert member_check["totalResults"] == 1
    remove = {"schemas": [PATCH], "Operations": [{"op": "Remove", "path": f'members[value eq "{uid}"]'}]}
    _ok(http.patch(f"Groups/{gid}", json=remove), 200, 204)
    assert (
        _ok(http.get("Groups", params={"filter": f'id eq "{gid}" and members eq "{uid}"'}), 200)[
            "totalResults"
        ]
        == 0
    )

    disable = {"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}
    _ok(http.patch(f"Users/{uid}", json=disable), 200, 204)
    assert _ok(http.get(f"Users/{uid}"), 200)["active"] is False
    assert http.delete(f"Users/{uid}").status_code == 204
    assert http.get(f"Users/{uid}").status_code == 404
    assert http.delete(f"Groups/{gid}").status_code == 204


def test_okta_provisioning_sequence_with_license_effects(live):  # type: ignore[no-untyped-def]
    """Okta's documented sequence: look up by userName with paging, create, PUT the whole user back,
    push a group and its members with PATCH, and deactivate with a PATCH of active false; licenses
    follow (a group of the licensed plan seats its new member, deactivation frees the seat)."""
    base, env, http = live
    lookup = _ok(
        http.get(
            "Users", params={"filter": 'userName eq "okta.user@acme.com"', "startIndex": 1, "count": 100}
        ),
        200,
    )
    assert lookup["totalResults"] == 0
    user = _ok(
        http.post(
            "Users",
            json={
                "schemas": [USER],
                "userName": "okta.user@acme.com",
                "name": {"givenName": "Okta", "familyName": "User"},
                "emails": [{"primary": True, "value": "okta.user@acme.com", "type": "work"}],
                "displayName": "Okta User",
                "locale": "en-US",
                "externalId": "00ujl29u0le5T6Aj10h7",
                "groups": [],
                "password": "1mz050nq",
                "active": True,
            },
        ),
        201,
    )
    uid = user["id"]
    assert "password" not in user
    user["name"]["familyName"] = "Changed"
    user.pop("meta")
    put = _ok(http.put(f"Users/{uid}", json=user), 200)
    assert put["name"]["familyName"] == "Changed"
    group = _ok(
        http.post("Groups", json={"schemas": [GROUP], "displayName": "Test SCIMv2", "members": []}), 201
    )
    gid = group["id"]

    # license the group through the API, then let Okta push the membership
    admin = cli(env, "token", "create", "--role", "global_admin", "--tenant", "acme").strip()
    operator = cli(env, "token", "create", "--role", "operator").strip()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {operator}"}) as op:
        _ok(
            op.post("/v1/products", json={"id": "charts", "name": "Charts", "audience": "api://charts"}),
            200,
            201,
        )
        _ok(
            op.post(
                "/v1/products/charts/plans",
                json={"id": "charts-pro", "name": "Pro", "spIdentifier": "charts.pro", "trialDays": 0},
            ),
            200,
            201,
        )
        _ok(op.post("/v1/tenants/acme/subscriptions", json={"planId": "charts-pro", "quantity": 1}), 200, 201)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"}) as c:
        _ok(c.post("/v1/tenants/acme/licenses/charts-pro/assign", json={"groups": [gid]}), 200, 202)
        add = {
            "schemas": [PATCH],
            "Operations": [
                {"op": "add", "path": "members", "value": [{"value": uid, "display": "okta.user@acme.com"}]}
            ],
        }
        _ok(http.patch(f"Groups/{gid}", json=add), 200, 204)
        status = _group_status(base, env, "acme", gid)
        assert status["membersSeated"] == 1
        lic = c.get(f"/v1/tenants/acme/users/{uid}/licenses").json()["items"][0]
        assert lic["state"] == "Active"

        deactivate = {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}
        _ok(http.patch(f"Users/{uid}", json=deactivate), 200, 204)
        assert _ok(http.get(f"Users/{uid}"), 200)["active"] is False
        lic = c.get(f"/v1/tenants/acme/users/{uid}/licenses").json()["items"][0]
        assert lic["state"] == "Disabled"
        row = c.get("/v1/tenants/acme/licenses/charts-pro").json()
        assert row["available"] == 1

        # Okta renames the group and replaces its members with PATCH replace
        rename = {
            "schemas": [PATCH],
            "Operations": [{"op": "replace", "value": {"id": gid, "displayName": "Renamed Group"}}],
        }
        _ok(http.patch(f"Groups/{gid}", json=rename), 200, 204)
        assert _ok(http.get(f"Groups/{gid}"), 200)["displayName"] == "Renamed Group"
        audit = c.get("/v1/tenants/acme/audit", params={"targetId": uid}).json()["items"]
        assert {e["actor"]["type"] for e in audit if e["action"].startswith("user.")} == {"scim"}
