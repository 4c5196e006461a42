"""Rate limits (issue: reliability and abuse): the run-time check per token and, for tokens it must validate,
per client address; the API per credential, and failed sign-ins per client address. Over a limit: 429, a
problem document, `Retry-After`; other tokens and addresses are not affected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from licensedesk.app import create_app
from licensedesk.auth import service as auth
from licensedesk.licensing import service as licensing
from licensedesk.ratelimit import RateLimiter, retry_after
from licensedesk.settings import Settings
from tests.api.support import assert_problem, bearer
from tests.world import PLAN, make_world

PRODUCT = "innofalls-charts"
CHECK = f"/v1/licensing/{PRODUCT}/servicePlans"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the limiter


def test_a_bucket_allows_its_burst_then_refuses_with_the_wait_then_refills():
    t = FakeTime()
    limiter = RateLimiter(2.0, 3, clock=t)
    assert [limiter.hit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.hit("a") == pytest.approx(0.5)  # one request per 0.5 s at 2/s
    assert limiter.hit("b") == 0.0  # another key has its own bucket
    t.now += 0.5
    assert limiter.hit("a") == 0.0
    assert limiter.hit("a") > 0
    t.now += 100  # a bucket never holds more than its burst
    assert [limiter.hit("a") for _ in range(4)][-1] > 0
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"


def test_blocked_looks_without_spending_and_a_zero_rate_is_off():
    t = FakeTime()
    limiter = RateLimiter(1.0, 1, clock=t)
    assert limiter.blocked("a") == 0.0
    limiter.hit("a")
    assert limiter.blocked("a") == pytest.approx(1.0)
    assert limiter.blocked("a") == pytest.approx(1.0)  # looking spent nothing
    off = RateLimiter(0, 1)
    assert not off.enabled and all(off.hit("a") == 0.0 for _ in range(1000))


def test_a_reading_of_the_clock_older_than_the_buckets_refills_nothing_and_takes_nothing():
    """Threads race to a bucket: the one that read the clock first may update it second. Its elapsed time
    is then negative, which at a high rate emptied the bucket by millions (found as 429s under load)."""
    readings = iter([10.0, 9.999])
    limiter = RateLimiter(1e9, 2, clock=lambda: next(readings))
    assert limiter.hit("a") == 0.0  # one of two left
    assert limiter.hit("a") == 0.0  # an older reading: the one left is still there


def test_threads_hitting_one_bucket_under_a_rate_it_never_reaches_are_never_refused():
    import sys
    import threading

    limiter = RateLimiter(1e9, 100)
    refused: list[float] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:

        def hammer() -> None:
            refused.extend(w for w in (limiter.hit("a") for _ in range(20_000)) if w)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert refused == []


def test_the_buckets_are_bounded_forgetting_the_least_recently_seen():
    limiter = RateLimiter(1.0, 1, max_keys=100)
    for i in range(1000):
        limiter.hit(i)
    assert limiter.keys() == 100
    assert limiter.hit(0) == 0.0  # forgotten: a full bucket again


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def limited(ctx, database_url) -> Iterator[dict[str, Any]]:
    w = make_world(ctx, "contoso")
    w.buy(5)
    ann, bob = w.user("ann"), w.user("bob")
    licensing.assign(ctx, w.tenant, PLAN, users=[ann, bob])
    settings = Settings(
        database_url=database_url,
        dev_issuer=True,
        public_url="http://testserver",
        check_rate_per_token=1,
        check_burst_per_token=3,
        check_rate_per_address=1,
        check_burst_per_address=4,
        api_rate_per_credential=1,
        api_burst_per_credential=3,
        scim_rate_per_credential=1,
        scim_burst_per_credential=6,
        auth_failures_per_address=1,
        auth_failures_burst=3,
    )
    app = create_app(settings, db=ctx.db, clock=ctx.clock, run_worker=False, migrate=False)
    t = FakeTime()
    for limiter in (
        app.state.checker.token_limiter,
        app.state.checker.address_limiter,
        app.state.api_limiter,
        app.state.scim_limiter,
        app.state.auth_failures,
    ):
        limiter.clock = t
    with TestClient(app) as client:
        checker = app.state.checker
        yield {
            "client": client,
            "time": t,
            "tenant": w.tenant,
            "token": lambda upn: checker.mint_dev_token(w.tenant, upn, PRODUCT),
            "reader": auth.create_token(ctx, "reader", tenant_ref=w.tenant)[1],
            "admin": auth.create_token(ctx, "global_admin", tenant_ref=w.tenant)[1],
            "scim": auth.create_token(ctx, "scim", tenant_ref=w.tenant)[1],
        }


def _limited(response: Any) -> None:
    body = assert_problem(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1
    assert body["detail"]


def test_the_check_is_limited_per_token_cached_or_not(limited):
    client, ann = limited["client"], limited["token"]("ann@contoso.com")
    for _ in range(3):  # the first validates the token, the next two are cached answers: all count
        assert client.get(CHECK, headers=bearer(ann)).status_code == 200
    over = client.get(CHECK, headers=bearer(ann))
    _limited(over)
    assert over.headers["access-control-allow-origin"] == "*"  # a visual in another origin can read it
    bob = limited["token"]("bob@contoso.com")
    assert client.get(CHECK, headers=bearer(bob)).status_code == 200  # another token is not affected
    limited["time"].now += 1.0
    assert client.get(CHECK, headers=bearer(ann)).json()["plans"][0]["state"] == 1


def test_tokens_to_validate_are_limited_per_address_and_cached_answers_are_not(limited):
    client = limited["client"]
    ann = limited["token"]("ann@contoso.com")
    assert client.get(CHECK, headers=bearer(ann)).status_code == 200  # a miss: spends one of 4
    for i in range(3):
        assert client.get(CHECK, headers=bearer(f"forged.{i}.token")).status_code == 401
    _limited(client.get(CHECK, headers=bearer("forged.again.token")))  # no more validating from here
    # a cached answer costs nothing to serve: the address limit does not hold it back
    assert client.get(CHECK, headers=bearer(ann)).status_code == 200


def test_the_api_is_limited_per_credential(limited):
    client, tenant = limited["client"], limited["tenant"]
    path = f"/v1/tenants/{tenant}/licenses"
    for _ in range(3):
        assert client.get(path, headers=bearer(limited["reader"])).status_code == 200
    _limited(client.get(path, headers=bearer(limited["reader"])))
    assert client.get(path, headers=bearer(limited["admin"])).status_code == 200
    limited["time"].now += 1.0
    assert client.get(path, headers=bearer(limited["reader"])).status_code == 200


def test_a_scim_token_has_its_own_higher_limit(limited):
    """An identity provider's sync creates users one request each: SCIM tokens are limited apart from the
    API's credentials, with their own (higher) burst."""
    client, tenant = limited["client"], limited["tenant"]
    path = f"/scim/v2/{tenant}/Users"
    for _ in range(6):  # past the API's burst of 3
        assert client.get(path, headers=bearer(limited["scim"])).status_code == 200
    over = client.get(path, headers=bearer(limited["scim"]))
    assert over.status_code == 429
    assert int(over.headers["retry-after"]) >= 1
    # the API's credentials are counted apart
    assert client.get(f"/v1/tenants/{tenant}/licenses", headers=bearer(limited["admin"])).status_code == 200
    limited["time"].now += 1.0
    assert client.get(path, headers=bearer(limited["scim"])).status_code == 200


def test_an_address_presenting_bad_tokens_must_wait_and_changes_nothing(limited):
    client, tenant = limited["client"], limited["tenant"]
    path = f"/v1/tenants/{tenant}/licenses"
    for i in range(3):
        assert_problem(client.get(path, headers=bearer(f"ld_wrong_{i}")), 401)
    _limited(client.get(path, headers=bearer("ld_wrong_again")))
    # while it waits, even a good token from that address is held back (nothing is looked up)
    _limited(client.get(path, headers=bearer(limited["admin"])))
    limited["time"].now += 1.0
    assert client.get(path, headers=bearer(limited["admin"])).status_code == 200
