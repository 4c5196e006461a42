"""POST /v1/marketplace/events: every action, signatures, duplicates, and events out of order."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from licensedesk.app import create_app
from licensedesk.audit import service as audit
from licensedesk.billing import marketplace
from licensedesk.billing import service as billing
from licensedesk.licensing import processing
from licensedesk.licensing import service as licensing
from licensedesk.settings import Settings
from licensedesk.tenancy import service as tenancy
from tests.world import PLAN, make_world

SECRET = "marketplace-test-secret"
BASIC = "innofalls-charts-basic"
URL = "/v1/marketplace/events"


@dataclass
class Market:
    client: TestClient
    ctx: object

    def send(
        self,
        action: str,
        *,
        sub: str = "mkt-sub-1",
        plan: str | None = PLAN,
        quantity: int | None = 5,
        at: str = "2026-01-01T12:00:00Z",
        event_id: str | None = None,
        secret: str = SECRET,
        tamper: bool = False,
        sign_at: int | None = None,
        signature: str | None = None,
    ):  # type: ignore[no-untyped-def]
        body = {
            "id": event_id or str(uuid.uuid4()),
            "subscriptionId": sub,
            "planId": plan,
            "quantity": quantity,
            "action": action,
            "timeStamp": at,
            "beneficiary": {
                "tenantId": "entra-tid-42",
                "emailId": "buyer@fabrikam.example",
                "objectId": "oid-buyer",
            },
        }
        raw = json.dumps(body).encode()
        header = signature if signature is not None else marketplace.sign(secret, raw, sign_at)
        if tamper:
            raw = raw.replace(b'"quantity": 5', b'"quantity": 50')
        headers = {"Content-Type": "application/json"}
        if header:
            headers["X-Marketplace-Signature"] = header
        return self.client.post(URL, content=raw, headers=headers)

    def tenant(self):  # type: ignore[no-untyped-def]
        return tenancy.find_by_external_id(self.ctx, "entra-tid-42")  # type: ignore[arg-type]


@pytest.fixture
def market(ctx, database_url) -> Iterator[Market]:
    make_world(ctx, "contoso")  # the catalog
    app = create_app(
        Settings(database_url=database_url, marketplace_secret=SECRET),
        db=ctx.db,
        clock=ctx.clock,
        run_worker=False,
        migrate=False,
    )
    with TestClient(app) as client:
        yield Market(client, ctx)


def subscription(market):  # type: ignore[no-untyped-def]
    [sub] = billing.list_subscriptions(market.ctx, market.tenant().id).items
    return sub


def test_subscribe_creates_the_tenant_and_the_subscription_and_licenses_the_buyer(market):
    r = market.send("Subscribe")
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "applied"
    tenant = market.tenant()
    assert (
        tenant is not None
        and tenant.slug == "fabrikam-example"
        and tenant.external_tenant_id == "entra-tid-42"
    )
    sub = subscription(market)
    assert (sub.plan_id, sub.quantity, sub.status, sub.source, sub.external_id) == (
        PLAN,
        5,
        "Active",
        "marketplace",
        "mkt-sub-1",
    )
    [buyer] = licensing.licensed_users(market.ctx, tenant.id, PLAN).items
    assert (buyer.user["userPrincipalName"], buyer.state, buyer.sources) == (
        "buyer@fabrikam.example",
        "Active",
        [{"type": "direct"}],
    )
    row = licensing.license_overview(market.ctx, tenant.id, PLAN)
    assert (row.purchased, row.assigned, row.available) == (5, 1, 4)
    events = audit.query(market.ctx, tenant.id, action="marketplace.subscribe").items
    assert events[0].actor["type"] == "marketplace"


def test_a_repeated_delivery_answers_200_and_changes_nothing(market):
    first = market.send("Subscribe", event_id="evt-1")
    again = market.send("Subscribe", event_id="evt-1", quantity=9)
    assert (first.json()["outcome"], again.status_code, again.json()["outcome"]) == (
        "applied",
        200,
        "duplicate",
    )
    assert subscription(market).quantity == 5


def test_change_quantity_applies_with_force(market):
    market.send("Subscribe", at="2026-01-01T12:00:00Z")
    tenant = market.tenant()
    from licensedesk.directory import service as directory

    for i in range(3):
        u = directory.create_user(market.ctx, tenant.id, f"u{i}@fabrikam.example").id
        licensing.assign(market.ctx, tenant.id, PLAN, users=[u])
    assert licensing.license_overview(market.ctx, tenant.id, PLAN).assigned == 4
    r = market.send("ChangeQuantity", quantity=2, at="2026-01-02T12:00:00Z")
    assert r.status_code == 200 and r.json()["outcome"] == "applied"
    row = licensing.license_overview(market.ctx, tenant.id, PLAN)
    assert (row.purchased, row.assigned, row.waiting) == (2, 2, 2)  # forced: the newest lost their seats


def test_an_older_event_arriving_late_is_recorded_and_ignored(market):
    market.send("Subscribe", at="2026-01-01T12:00:00Z")
    market.send("ChangeQuantity", quantity=10, at="2026-01-03T12:00:00Z")
    late = market.send("ChangeQuantity", quantity=3, at="2026-01-02T12:00:00Z")
    assert (late.status_code, late.json()["outcome"]) == (200, "stale")
    assert subscription(market).quantity == 10


def test_suspend_reinstate_renew_and_unsubscribe(market, clock):
    market.send("Subscribe", at="2026-01-01T12:00:00Z")
    tenant = market.tenant()
    buyer = licensing.licensed_users(market.ctx, tenant.id, PLAN).items[0].user["id"]

    def state() -> str | None:
        lic = licensing.user_licenses(market.ctx, tenant.id, buyer)
        return lic[0].state if lic else None

    market.send("Suspend", at="2026-01-02T12:00:00Z")
    assert (subscription(market).status, state()) == ("Suspended", "Suspended")
    market.send("Reinstate", at="2026-01-03T12:00:00Z")
    assert (subscription(market).status, state()) == ("Active", "Active")
    before = subscription(market).term_ends_at
    market.send("Renew", at="2026-01-04T12:00:00Z")
    assert (
        subscription(market).status == "Active" and subscription(market).term_ends_at == before
    )  # no term: as is
    market.send("Unsubscribe", at="2026-01-05T12:00:00Z")
    assert (subscription(market).status, state()) == ("Cancelled", "Error")
    after = market.send("Reinstate", at="2026-01-06T12:00:00Z")
    assert after.status_code == 409 and after.json()["code"] == "subscription_terminal"


def test_change_plan_moves_the_subscription_and_its_assignments(market):
    market.send("Subscribe", at="2026-01-01T12:00:00Z")
    tenant = market.tenant()
    from licensedesk.directory import service as directory

    g = directory.create_group(
        market.ctx,
        tenant.id,
        "Team",
        members={"users": [directory.create_user(market.ctx, tenant.id, "team@fabrikam.example").id]},
    ).id
    licensing.assign(market.ctx, tenant.id, PLAN, groups=[g])
    processing.drain(market.ctx)
    r = market.send("ChangePlan", plan=BASIC, at="2026-01-02T12:00:00Z")
    assert r.status_code == 200, r.text
    processing.drain(market.ctx)
    assert subscription(market).plan_id == BASIC
    holders = {
        x.user["userPrincipalName"]: x.state
        for x in licensing.licensed_users(market.ctx, tenant.id, BASIC).items
    }
    assert holders == {"buyer@fabrikam.example": "Active", "team@fabrikam.example": "Active"}
    assert licensing.licensed_users(market.ctx, tenant.id, PLAN).items == []
    assert [x.plan_id for x in licensing.group_licenses(market.ctx, tenant.id, g)] == [BASIC]


@pytest.mark.parametrize("case", ["missing", "wrong_secret", "tampered", "too_old", "too_new", "malformed"])
def test_bad_signatures_are_refused_and_change_nothing(market, case):
    kwargs = {
        "missing": {"signature": ""},
        "wrong_secret": {"secret": "not-the-secret"},
        "tampered": {"tamper": True},
        "too_old": {"sign_at": int(time.time()) - 310},
        "too_new": {"sign_at": int(time.time()) + 310},
        "malformed": {"signature": "sha256=deadbeef"},
    }[case]
    r = market.send("Subscribe", **kwargs)
    assert r.status_code == 401 and r.json()["code"] == "invalid_signature"
    assert market.tenant() is None


def test_a_replayed_signature_outside_the_window_is_refused(market):
    old = int(time.time()) - 3600
    r = market.send("Subscribe", sign_at=old)
    assert r.status_code == 401
    assert market.tenant() is None


def test_events_for_unknown_subscriptions_are_404_and_bad_bodies_4xx(market):
    r = market.send("ChangeQuantity", sub="no-such-sub")
    assert r.status_code == 404
    raw = b'{"not": "an event"}'
    r = market.client.post(
        URL, content=raw, headers={"X-Marketplace-Signature": marketplace.sign(SECRET, raw)}
    )
    assert r.status_code == 422
    raw = b"not json"
    r = market.client.post(
        URL, content=raw, headers={"X-Marketplace-Signature": marketplace.sign(SECRET, raw)}
    )
    assert r.status_code == 400
    assert market.tenant() is None
