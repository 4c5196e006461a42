"""The webhook API over HTTP: secrets shown once and never again (not to readers, not in the audit log,
not in logs), the delivery log and redelivery, global endpoints, and bad input refused with a problem
document that changes nothing."""

from __future__ import annotations

import logging

import pytest

from licensedesk.licensing import service as licensing
from licensedesk.webhooks import delivery
from tests.api.support import PLAN, Seed, Unchanged, assert_problem, bearer, lenient

HOOK = "https://vendor.example/hooks/licensedesk"


def _create(api, body=None, role="global_admin", path=None):  # type: ignore[no-untyped-def]
    r = api.post(path or f"/v1/tenants/{api.tenant}/webhooks", body or {"url": HOOK}, role=role)
    assert r.status_code == 201, r.text
    return r.json()


def test_the_secret_is_shown_once_and_never_again(api, caplog):
    caplog.set_level(logging.DEBUG)
    created = _create(api, {"url": HOOK, "events": ["license.changed"], "description": "product server"})
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    assert created["events"] == ["license.changed"] and created["scope"] == "tenant"
    assert created["enabled"] is True and created["url"] == HOOK
    for role in ("operator", "global_admin", "license_admin", "billing_admin", "reader"):
        listed = api.get(f"/v1/tenants/{api.tenant}/webhooks", role)
        one = api.get(f"/v1/tenants/{api.tenant}/webhooks/{created['id']}", role)
        assert listed.status_code == 200 and one.status_code == 200, role
        assert [e["id"] for e in listed.json()["items"]] == [created["id"]]
        assert secret not in listed.text and secret not in one.text and "secret" not in one.json()
    patched = api.patch(f"/v1/tenants/{api.tenant}/webhooks/{created['id']}", {"description": "x"})
    assert patched.status_code == 200 and "secret" not in patched.json()
    rotated = api.post(f"/v1/tenants/{api.tenant}/webhooks/{created['id']}/rotate-secret")
    assert rotated.status_code == 200 and rotated.json()["secret"] not in (secret, None)
    audit = api.get(f"/v1/tenants/{api.tenant}/audit?action=webhook.*", "operator")
    assert [e["action"] for e in audit.json()["items"]] == [
        "webhook.secret_rotated",
        "webhook.updated",
        "webhook.created",
    ]
    assert secret not in audit.text and rotated.json()["secret"] not in audit.text
    assert secret not in caplog.text and rotated.json()["secret"] not in caplog.text


def test_the_delivery_log_and_redelivery_over_http(api, receiver):
    seed = Seed(api, api.tenant)
    seed.buy(5)
    ep = _create(api, {"url": receiver.url, "events": ["license.changed"]})
    user = seed.user()
    seed.assign(users=[user["id"]])
    log = api.get(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}/deliveries", "reader")
    assert log.status_code == 200
    [d] = log.json()["items"]
    assert d["state"] == "pending" and d["attempts"] == 0 and d["eventType"] == "license.changed"
    assert d["endpointId"] == ep["id"] and d["tenantId"] == api.tenant and d["lastResponseCode"] is None
    assert d["nextAttemptAt"].endswith("Z")

    receiver.answer(502)
    assert delivery.deliver_due(api.ctx) == 1
    [d] = api.get(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}/deliveries").json()["items"]
    assert (d["state"], d["attempts"], d["lastResponseCode"], d["lastError"]) == (
        "pending",
        1,
        502,
        "HTTP 502",
    )
    assert d["lastAttemptAt"] and d["nextAttemptAt"] > d["lastAttemptAt"]
    failed = api.get(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}/deliveries?state=failed")
    assert failed.json()["items"] == []

    again = api.post(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}/deliveries/{d['id']}/redeliver")
    assert again.status_code == 202, again.text
    assert again.json()["attempts"] == 0 and again.json()["state"] == "pending"
    assert delivery.deliver_due(api.ctx) == 1
    [d] = api.get(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}/deliveries").json()["items"]
    assert (d["state"], d["lastResponseCode"]) == ("succeeded", 200)
    assert d["completedAt"] is not None

    # removing the endpoint removes its log; nothing more is queued for it
    assert api.delete(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}").status_code == 204
    assert api.get(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}/deliveries").status_code == 404
    seed.assign(users=[seed.user()["id"]])
    assert delivery.deliver_due(api.ctx) == 0


def test_global_endpoints_are_the_operators(api):
    created = _create(api, {"url": HOOK}, role="operator", path="/v1/webhooks")
    assert created["scope"] == "global"
    for role in ("global_admin", "reader"):
        r = api.post("/v1/webhooks", {"url": HOOK}, role=role)
        assert_problem(r, 403, "forbidden")
        assert_problem(api.get("/v1/webhooks", role), 403, "forbidden")
    # a tenant's admin does not see global endpoints among the tenant's, nor by id
    assert api.get(f"/v1/tenants/{api.tenant}/webhooks").json()["items"] == []
    assert_problem(api.get(f"/v1/tenants/{api.tenant}/webhooks/{created['id']}"), 404, "not_found")
    assert [e["id"] for e in api.get("/v1/webhooks", "operator").json()["items"]] == [created["id"]]


def test_another_tenants_endpoint_is_not_found(api):
    created = _create(api)
    for path in (
        f"/v1/tenants/{api.other_tenant}/webhooks/{created['id']}",
        f"/v1/tenants/{api.other_tenant}/webhooks/{created['id']}/deliveries",
    ):
        assert_problem(api.get(path, other=True), 404, "not_found")
    unchanged = Unchanged(api)
    r = api.patch(f"/v1/tenants/{api.other_tenant}/webhooks/{created['id']}", {"enabled": False}, other=True)
    assert_problem(r, 404, "not_found")
    r = api.delete(f"/v1/tenants/{api.other_tenant}/webhooks/{created['id']}", other=True)
    assert_problem(r, 404, "not_found")
    unchanged.check("fabrikam naming contoso's endpoint")


BAD_CREATE = [
    ({"url": "ftp://vendor.example/x"}, 422),
    ({"url": "javascript:alert(1)"}, 422),
    ({"url": "file:///etc/passwd"}, 422),
    ({"url": "http://"}, 422),
    ({"url": "vendor.example/hook"}, 422),
    ({"url": "https://user:pw@vendor.example/hook"}, 422),
    ({"url": "https://vendor.example/a b"}, 422),
    ({"url": "https://vendor.example:99999/x"}, 422),
    ({"url": "https://vendor.example/" + "x" * 2000}, 422),
    ({"url": 5}, 400),
    ({}, 400),
    ({"url": HOOK, "events": []}, 422),
    ({"url": HOOK, "events": ["license.exploded"]}, 422),
    ({"url": HOOK, "events": "license.changed"}, 400),
    ({"url": HOOK, "secret": "mine"}, 400),
    ({"url": HOOK, "id": "00000000-0000-0000-0000-000000000001"}, 400),
    ({"url": HOOK, "unknown": 1}, 400),
    ({"url": HOOK, "enabled": "yes"}, 400),
    ({"url": HOOK, "description": "x" * 501}, 422),
]


@pytest.mark.parametrize("body,status", BAD_CREATE, ids=[str(b)[:60] for b, _ in BAD_CREATE])
def test_bad_endpoint_bodies_are_refused_and_change_nothing(api, body, status):
    unchanged = Unchanged(api)
    r = lenient(api).post(
        f"/v1/tenants/{api.tenant}/webhooks", json=body, headers=bearer(api.tokens["global_admin"])
    )
    assert_problem(r, status)
    unchanged.check(str(body))


def test_bad_updates_and_queries_are_refused_and_change_nothing(api):
    ep = _create(api)
    base = f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}"
    unchanged = Unchanged(api)
    client = lenient(api)
    headers = bearer(api.tokens["global_admin"])
    for body, status in (
        ({"url": None}, 422),
        ({"enabled": None}, 422),
        ({"url": "gopher://x"}, 422),
        ({"events": ["*", "nope"]}, 422),
        ({"secret": "x"}, 400),
        ({"createdAt": "2026-01-01T00:00:00Z"}, 400),
    ):
        assert_problem(client.patch(base, json=body, headers=headers), status)
    assert_problem(client.get(f"{base}/deliveries?state=lost", headers=headers), 422)
    assert_problem(client.get(f"{base}/deliveries?limit=0", headers=headers), 422)
    assert_problem(client.get(f"{base}/deliveries?cursor=garbage!", headers=headers), 400, "invalid_cursor")
    assert_problem(client.post(f"{base}/deliveries/{'0' * 36}/redeliver", headers=headers), 404, "not_found")
    assert_problem(client.get(f"/v1/tenants/{api.tenant}/webhooks/{'x' * 37}", headers=headers), 422)
    unchanged.check("bad updates")


def test_a_disabled_endpoints_delivery_cannot_be_redelivered(api):
    seed = Seed(api, api.tenant)
    seed.buy(5)
    ep = _create(api, {"url": HOOK, "events": ["license.changed"]})
    licensing.assign(api.ctx, api.tenant, PLAN, users=[seed.user()["id"]])
    assert api.patch(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}", {"enabled": False}).status_code == 200
    [d] = api.get(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}/deliveries").json()["items"]
    assert d["state"] == "failed" and d["lastError"] == "endpoint disabled"
    r = api.post(f"/v1/tenants/{api.tenant}/webhooks/{ep['id']}/deliveries/{d['id']}/redeliver")
    assert_problem(r, 409, "endpoint_disabled")
