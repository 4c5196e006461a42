"""Outgoing webhooks end to end on both databases: the outbox is written by the change's own transaction
(nothing for a refused or rolled-back change, nothing at all without endpoints), deliveries go to a real
HTTP receiver, signed as marketplace events are, retried with exponential backoff by the clock, and given
up after the last attempt; several workers never send one delivery twice at once."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from licensedesk.billing import marketplace
from licensedesk.billing import service as billing
from licensedesk.clock import FrozenClock
from licensedesk.db.schema import webhook_deliveries, webhook_events
from licensedesk.errors import NotEnoughLicenses
from licensedesk.licensing import service as licensing
from licensedesk.webhooks import delivery, signing
from licensedesk.webhooks import repository as repo
from licensedesk.webhooks import service as webhooks
from tests.webhooks.receiver import Receiver
from tests.world import PLAN, World, make_world

START = datetime(2026, 3, 1, 9, 0, 0)
POLICY = delivery.Policy(
    timeout_seconds=5,
    max_attempts=4,
    backoff_seconds=30,
    backoff_max_seconds=100,
    allow_private_addresses=True,  # the receiver listens on loopback
)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def world(ctx) -> World:
    return make_world(ctx, "contoso")


def counts(ctx) -> tuple[int, int]:
    with ctx.db.read() as conn:
        events = conn.execute(select(func.count()).select_from(webhook_events)).scalar_one()
        deliveries = conn.execute(select(func.count()).select_from(webhook_deliveries)).scalar_one()
    return events, deliveries


def deliver(ctx, policy: delivery.Policy = POLICY) -> int:
    return delivery.deliver_due(ctx, policy=policy)


def bodies(rec: Receiver) -> list[dict]:
    """What the receiver got, in event order (deliveries are sent a few at a time, in no set order)."""
    return sorted((json.loads(r.body) for r in rec.requests), key=lambda b: (b["createdAt"], b["type"]))


def endpoint(ctx, tenant: str | None, url: str, events: list[str]) -> tuple[str, str]:
    ep, secret = webhooks.create_endpoint(ctx, tenant, url, event_types=events)
    return ep.id, secret


# ---------------------------------------------------------------- delivery, retries, signature


def test_a_delivery_that_fails_twice_is_retried_with_backoff_and_then_succeeds(ctx, clock, world, receiver):
    world.buy(5)
    ep, secret = endpoint(ctx, world.tenant, receiver.url, ["license.changed"])
    receiver.answer(500, 503)
    clock.advance(seconds=10)
    user = world.user("ada")
    licensing.assign(ctx, world.tenant, PLAN, users=[user])

    assert deliver(ctx) == 1  # attempt 1 at T: 500
    first = clock.now()
    [d] = webhooks.list_deliveries(ctx, world.tenant, ep).items
    assert (d.state, d.attempts, d.last_response_code) == ("pending", 1, 500)
    assert d.next_attempt_at == first + timedelta(seconds=30)
    assert d.last_error == "HTTP 500"

    clock.advance(seconds=29)
    assert deliver(ctx) == 0  # not due yet
    clock.advance(seconds=1)
    assert deliver(ctx) == 1  # attempt 2 at T+30: 503
    [d] = webhooks.list_deliveries(ctx, world.tenant, ep).items
    assert (d.state, d.attempts, d.last_response_code) == ("pending", 2, 503)
    assert d.next_attempt_at == clock.now() + timedelta(seconds=60)

    clock.advance(seconds=59)
    assert deliver(ctx) == 0
    clock.advance(seconds=1)
    assert deliver(ctx) == 1  # attempt 3 at T+90: 200
    [d] = webhooks.list_deliveries(ctx, world.tenant, ep).items
    assert (d.state, d.attempts, d.last_response_code, d.last_error) == ("succeeded", 3, 200, None)
    assert d.next_attempt_at is None and d.completed_at == clock.now()
    assert deliver(ctx) == 0

    # three POSTs of the very same bytes and event id, each signed at its own time
    assert len(receiver.requests) == 3
    assert len({r.body for r in receiver.requests}) == 1
    assert {r.headers["x-licensedesk-event-id"] for r in receiver.requests} == {d.event_id}
    times = [first, first + timedelta(seconds=30), first + timedelta(seconds=90)]
    for r, at in zip(receiver.requests, times, strict=True):
        header = r.headers["x-licensedesk-signature"]
        assert header.startswith(f"t={signing.unix_time(at)},v1=")
        # verified exactly as incoming marketplace events are
        marketplace.verify(secret, header, r.body, now=signing.unix_time(at))
        with pytest.raises(marketplace.BadSignature):
            marketplace.verify("another-secret", header, r.body, now=signing.unix_time(at))
        with pytest.raises(marketplace.BadSignature):
            marketplace.verify(secret, header, r.body + b" ", now=signing.unix_time(at))
        assert r.headers["content-type"] == "application/json"
        assert r.headers["x-licensedesk-event-type"] == "license.changed"
        assert r.headers["x-licensedesk-delivery-id"] == d.id
        assert r.path == "/hooks/licensedesk"

    body = bodies(receiver)[0]
    assert body == {
        "id": d.event_id,
        "type": "license.changed",
        "createdAt": (START + timedelta(seconds=10)).isoformat(timespec="microseconds") + "Z",
        "tenantId": world.tenant,
        "data": {
            "user": {"id": user, "userPrincipalName": "ada@contoso.com"},
            "planId": PLAN,
            "oldState": None,
            "newState": "Active",
            "reason": "license.granted",
        },
    }


def test_the_backoff_doubles_up_to_its_cap_and_the_last_attempt_fails_the_delivery(
    ctx, clock, world, receiver
):
    world.buy(5)
    ep, _ = endpoint(ctx, world.tenant, receiver.url, ["*"])
    receiver.answer(*[500] * POLICY.max_attempts)
    world.user("bob")
    licensing.assign(ctx, world.tenant, PLAN, users=["bob@contoso.com"])
    waits = []
    for attempt in range(1, POLICY.max_attempts + 1):
        assert deliver(ctx) == 1, attempt
        [d] = webhooks.list_deliveries(ctx, world.tenant, ep).items
        assert d.attempts == attempt
        if attempt < POLICY.max_attempts:
            assert d.state == "pending"
            waits.append((d.next_attempt_at - clock.now()).total_seconds())
            clock.set(d.next_attempt_at)
    assert waits == [30, 60, 100]  # 30, 60, then 120 capped at 100
    assert (d.state, d.next_attempt_at, d.completed_at) == ("failed", None, clock.now())
    clock.advance(days=1)
    assert deliver(ctx) == 0  # given up: never sent again by itself
    assert len(receiver.requests) == POLICY.max_attempts

    # redelivery: the same event again, with a fresh budget of attempts
    again = webhooks.redeliver(ctx, world.tenant, ep, d.id)
    assert (again.state, again.attempts, again.next_attempt_at) == ("pending", 0, clock.now())
    assert deliver(ctx) == 1
    [d2] = webhooks.list_deliveries(ctx, world.tenant, ep).items
    assert (d2.id, d2.state, d2.attempts, d2.last_response_code) == (d.id, "succeeded", 1, 200)
    assert len({r.body for r in receiver.requests}) == 1


def test_an_unreachable_endpoint_is_a_failed_attempt_with_the_error(ctx, clock, world):
    world.buy(5)
    # a port nobody listens on
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ep, _ = endpoint(ctx, world.tenant, f"http://127.0.0.1:{port}/x", ["license.changed"])
    licensing.assign(ctx, world.tenant, PLAN, users=[world.user("cy")])
    assert deliver(ctx) == 1
    [d] = webhooks.list_deliveries(ctx, world.tenant, ep).items
    assert (d.state, d.attempts, d.last_response_code) == ("pending", 1, None)
    assert d.last_error and "ConnectError" in d.last_error


# ---------------------------------------------------------------- the outbox is transactional


def test_no_endpoint_no_outbox_rows(ctx, world):
    """Without endpoints a change costs no outbox row at all (the fan-out's set-based path included)."""
    world.buy(3)
    members = world.users("m", 5)
    group = world.group("Team", users=members)
    licensing.assign(ctx, world.tenant, PLAN, groups=[group], allow_partial=True)
    world.drain()
    licensing.assign(ctx, world.tenant, PLAN, users=[world.user("solo")], allow_partial=True)
    # an endpoint of another tenant, and one of this tenant that wants only subscription events
    other = make_world(ctx, "fabrikam")
    webhooks.create_endpoint(ctx, other.tenant, "https://fabrikam.example/hook")
    webhooks.create_endpoint(
        ctx, world.tenant, "https://contoso.example/hook", event_types=["subscription.*"]
    )
    licensing.unassign(ctx, world.tenant, PLAN, users=["solo@contoso.com"])
    assert counts(ctx) == (0, 0)


def test_a_refused_change_sends_nothing(ctx, world, receiver):
    world.buy(1)
    endpoint(ctx, world.tenant, receiver.url, ["*"])
    licensing.assign(ctx, world.tenant, PLAN, users=[world.user("first")])
    before = counts(ctx)
    assert before == (1, 1)
    with pytest.raises(NotEnoughLicenses):
        licensing.assign(ctx, world.tenant, PLAN, users=[world.user("second"), world.user("third")])
    assert counts(ctx) == before


def test_a_rolled_back_change_sends_nothing(ctx, world):
    world.buy(5)
    endpoint(ctx, world.tenant, "https://contoso.example/hook", ["*"])
    user = world.user("rolled")
    with pytest.raises(RuntimeError), ctx.db.write() as conn:
        licensing.assign_in(conn, ctx, world.tenant, PLAN, users=[user])
        # inside the transaction the event is there, with its delivery...
        assert conn.execute(select(func.count()).select_from(webhook_events)).scalar_one() == 1
        raise RuntimeError("the request failed after the change")
    # ...and it went with the rollback
    assert counts(ctx) == (0, 0)
    assert world.state(user) is None


# ---------------------------------------------------------------- what is sent


def test_group_fan_out_sends_license_changed_for_every_member(ctx, clock, world, receiver):
    sub = world.buy(3)
    ep, _ = endpoint(ctx, world.tenant, receiver.url, ["license.changed"])
    inner = world.users("inner", 3)
    outer = world.users("outer", 2)
    nested = world.group("Inner", users=inner)
    top = world.group("Top", users=outer, groups=[nested])
    clock.advance(seconds=1)
    licensing.assign(ctx, world.tenant, PLAN, groups=[top], allow_partial=True)
    world.drain()
    while deliver(ctx):
        pass
    got = {b["data"]["user"]["id"]: b["data"] for b in bodies(receiver)}
    assert set(got) == set(inner + outer)
    assert sorted(d["newState"] for d in got.values()) == ["Active", "Active", "Active", "Error", "Error"]
    assert {d["oldState"] for d in got.values()} == {None}
    assert {d["reason"] for d in got.values()} == {"license.granted"}
    waiting = {u for u, d in got.items() if d["newState"] == "Error"}
    for u, d in got.items():
        assert d["user"]["userPrincipalName"].endswith("@contoso.com") and d["planId"] == PLAN
        assert world.state(u) == d["newState"]

    # the seating rule: two more seats seat the two waiting members, one event each
    receiver.requests.clear()
    clock.advance(seconds=1)
    billing.update_subscription(ctx, world.tenant, sub, quantity=5)
    assert deliver(ctx) == 2
    seated = [b["data"] for b in bodies(receiver)]
    assert {d["user"]["id"] for d in seated} == waiting
    assert {(d["oldState"], d["newState"], d["reason"]) for d in seated} == {
        ("Error", "Active", "license.seated")
    }
    assert len({b["id"] for b in bodies(receiver)}) == 2  # every event its own id
    assert all(d.state == "succeeded" for d in webhooks.list_deliveries(ctx, world.tenant, ep).items)


def test_the_subscription_lifecycle_sends_subscription_events(ctx, clock, world, receiver):
    endpoint(ctx, world.tenant, receiver.url, ["subscription.*", "license.changed"])
    sub = world.buy(2, term_ends_at=START + timedelta(days=10))
    user = world.user("life")
    licensing.assign(ctx, world.tenant, PLAN, users=[user])
    for days in (11, 30, 60):
        clock.advance(days=days)
        billing.advance_lifecycle(ctx)
    while deliver(ctx):
        clock.advance(seconds=1)
    got = bodies(receiver)
    subs = [b for b in got if b["type"].startswith("subscription.")]
    assert [b["type"] for b in subs] == [
        "subscription.created",
        "subscription.term_ended",
        "subscription.suspended",
        "subscription.expired",
    ]
    assert [b["data"]["subscription"]["status"] for b in subs] == [
        "Active",
        "Warning",
        "Suspended",
        "Expired",
    ]
    assert {b["data"]["subscription"]["id"] for b in subs} == {sub}
    assert subs[0]["data"]["changes"] == {"quantity": 2, "status": "Active", "trial": False, "source": "api"}
    assert subs[1]["data"]["changes"]["from"] == "Active" and subs[1]["data"]["changes"]["to"] == "Warning"
    assert (
        subs[1]["data"]["subscription"]["quantity"] == 2 and subs[1]["data"]["subscription"]["planId"] == PLAN
    )
    # the user's license followed the pool, one license.changed per step
    states = [(b["data"]["oldState"], b["data"]["newState"]) for b in got if b["type"] == "license.changed"]
    assert states == [
        (None, "Active"),
        ("Active", "Warning"),
        ("Warning", "Suspended"),
        ("Suspended", "Error"),
    ]


def test_quantity_plan_and_cancellation_events(ctx, clock, world, receiver):
    endpoint(ctx, world.tenant, receiver.url, ["subscription.*"])
    sub = world.buy(2)
    clock.advance(seconds=1)
    billing.update_subscription(ctx, world.tenant, sub, quantity=4)
    clock.advance(seconds=1)
    with ctx.db.write() as conn:
        row = billing.repository.subscription(conn, world.tenant, sub)
        billing.change_plan_in(conn, ctx, world.tenant, row, "innofalls-charts-basic")
    clock.advance(seconds=1)
    billing.update_subscription(ctx, world.tenant, sub, status="Cancelled", force=True)
    while deliver(ctx):
        pass
    got = bodies(receiver)
    assert [b["type"] for b in got] == [
        "subscription.created",
        "subscription.quantity_changed",
        "subscription.plan_changed",
        "subscription.cancelled",
    ]
    assert got[1]["data"]["changes"] == {"from": 2, "to": 4, "force": False}
    assert got[2]["data"]["subscription"]["planId"] == "innofalls-charts-basic"
    assert got[3]["data"]["subscription"]["status"] == "Cancelled"


def test_a_global_endpoint_receives_every_tenants_events_a_tenant_endpoint_only_its_own(ctx, world, receiver):
    other = make_world(ctx, "fabrikam")
    global_ep, _ = endpoint(ctx, None, receiver.url + "/global", ["license.changed"])
    own_ep, _ = endpoint(ctx, world.tenant, receiver.url + "/contoso", ["license.changed"])
    for w in (world, other):
        w.buy(1)
        licensing.assign(ctx, w.tenant, PLAN, users=[w.user("x")])
    while deliver(ctx):
        pass
    by_path: dict[str, set[str]] = {}
    for r in receiver.requests:
        by_path.setdefault(r.path, set()).add(json.loads(r.body)["tenantId"])
    assert by_path == {
        "/hooks/licensedesk/global": {world.tenant, other.tenant},
        "/hooks/licensedesk/contoso": {world.tenant},
    }
    # one event of contoso, delivered to two endpoints: the same event id at both
    ids = [
        json.loads(r.body)["id"] for r in receiver.requests if json.loads(r.body)["tenantId"] == world.tenant
    ]
    assert len(ids) == 2 and len(set(ids)) == 1
    assert len(webhooks.list_deliveries(ctx, None, global_ep).items) == 2
    assert len(webhooks.list_deliveries(ctx, world.tenant, own_ep).items) == 1


def test_disabling_an_endpoint_gives_up_its_pending_deliveries(ctx, world, receiver):
    world.buy(5)
    ep, _ = endpoint(ctx, world.tenant, receiver.url, ["license.changed"])
    licensing.assign(ctx, world.tenant, PLAN, users=[world.user("p")])
    webhooks.update_endpoint(ctx, world.tenant, ep, enabled=False)
    [d] = webhooks.list_deliveries(ctx, world.tenant, ep).items
    assert (d.state, d.attempts, d.last_error) == ("failed", 0, "endpoint disabled")
    licensing.assign(ctx, world.tenant, PLAN, users=[world.user("q")])
    assert len(webhooks.list_deliveries(ctx, world.tenant, ep).items) == 1  # nothing new for it
    assert deliver(ctx) == 0 and receiver.requests == []
    with pytest.raises(webhooks.EndpointDisabled):
        webhooks.redeliver(ctx, world.tenant, ep, d.id)


# ---------------------------------------------------------------- several workers


def test_several_workers_never_send_a_delivery_twice(ctx, world, receiver):
    world.buy(100)
    endpoint(ctx, world.tenant, receiver.url, ["license.changed"])
    members = world.users("w", 40)
    licensing.assign(ctx, world.tenant, PLAN, groups=[world.group("All", users=members)])
    world.drain()
    receiver.delay = 0.02
    done: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        n = 0
        while True:
            k = deliver(ctx)
            if k == 0:
                break
            n += k
        with lock:
            done.append(n)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    ids = [json.loads(r.body)["data"]["user"]["id"] for r in receiver.requests]
    assert sorted(ids) == sorted(members)  # every member once, none twice
    assert sum(done) == 40


def test_a_dead_workers_lease_runs_out_and_another_worker_delivers(ctx, clock, world, receiver):
    world.buy(5)
    ep, _ = endpoint(ctx, world.tenant, receiver.url, ["license.changed"])
    licensing.assign(ctx, world.tenant, PLAN, users=[world.user("z")])
    now = clock.now()
    with ctx.db.write() as conn:  # a worker claims it, then dies before sending
        assert len(repo.claim_due(conn, now, now + timedelta(seconds=60), "dead-worker", 16)) == 1
    assert deliver(ctx) == 0  # leased
    clock.advance(seconds=61)
    assert deliver(ctx) == 1
    [d] = webhooks.list_deliveries(ctx, world.tenant, ep).items
    assert (d.state, d.attempts) == ("succeeded", 1)
    assert len(receiver.requests) == 1


def test_finished_deliveries_are_forgotten_after_the_retention_pending_ones_never(
    ctx, clock, world, receiver
):
    world.buy(5)
    ep, _ = endpoint(ctx, world.tenant, receiver.url, ["license.changed"])
    licensing.assign(ctx, world.tenant, PLAN, users=[world.user("old")])
    assert deliver(ctx) == 1
    receiver.answer(*[500] * 20)
    clock.advance(days=10)
    licensing.assign(ctx, world.tenant, PLAN, users=[world.user("stuck")])
    assert deliver(ctx) == 1  # failed once, pending
    assert counts(ctx) == (2, 2)
    clock.advance(days=21)  # the first finished 31 days ago, the second is 21 days old and pending
    assert delivery.prune(ctx, retention_days=30) == (1, 1)
    [left] = webhooks.list_deliveries(ctx, world.tenant, ep).items
    assert left.state == "pending" and left.attempts == 1
    clock.advance(days=100)
    assert delivery.prune(ctx, retention_days=30) == (0, 0)  # still pending: kept, with its event
    assert counts(ctx) == (1, 1)
