"""GET servicePlans: the Power BI LicenseInfoResult shape, the state mapping, caching and bad tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from licensedesk.billing import service as billing
from licensedesk.checks import keys as signing
from licensedesk.directory import service as directory
from licensedesk.licensing import processing
from licensedesk.licensing import service as licensing
from tests.checks.conftest import PRODUCT, SERVICE_PLANS
from tests.world import PLAN

PRO = {"spIdentifier": "innofalls.charts.pro"}


def test_the_answer_has_the_exact_license_info_result_shape(env):
    w = env.world
    w.buy(1)
    u = w.user("ann")
    licensing.assign(w.ctx, w.tenant, PLAN, users=[u])
    r = env.check(env.token("ann@contoso.com"))
    assert r.status_code == 200
    assert r.json() == {
        "plans": [{"spIdentifier": "innofalls.charts.pro", "state": 1}],
        "isLicenseUnsupportedEnv": False,
        "isLicenseInfoAvailable": True,
    }
    assert r.headers["cache-control"] == "private, no-cache"
    assert r.headers["etag"].startswith('"')


@pytest.mark.parametrize(
    ("setup", "state"),
    [("active", 1), ("warning", 2), ("suspended", 3), ("error", 0), ("disabled", 0)],
)
def test_every_license_state_maps_to_its_service_plan_state(env, setup, state):
    w = env.world
    ctx = w.ctx
    status = {"active": "Active", "warning": "Warning", "suspended": "Suspended"}.get(setup, "Active")
    w.buy(1, status=status)
    if setup == "error":
        licensing.assign(ctx, w.tenant, PLAN, users=[w.user("first")])
    u = w.user("ann")
    licensing.assign(ctx, w.tenant, PLAN, users=[u], allow_partial=True)
    if setup == "disabled":
        directory.update_user(ctx, w.tenant, u, active=False)
    assert env.plans(env.token("ann@contoso.com")) == [{**PRO, "state": state}]


def test_a_user_without_licenses_or_unknown_gets_no_plans(env):
    w = env.world
    w.user("ann")
    assert env.plans(env.token("ann@contoso.com")) == []
    assert env.plans(env.token("nobody@contoso.com")) == []


def test_the_user_is_found_by_object_id_before_user_principal_name(env):
    w = env.world
    w.buy(2)
    by_oid = directory.create_user(w.ctx, w.tenant, "renamed@contoso.com", external_id="oid-42").id
    licensing.assign(w.ctx, w.tenant, PLAN, users=[by_oid])
    key = env.checker.keys.current(signing.DEV_ISSUER, w.tenant)
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": "http://testserver/dev-issuer/contoso",
            "aud": "api://innofalls-charts",
            "oid": "oid-42",
            "preferred_username": "old-name@contoso.com",
            "iat": now,
            "exp": now + 600,
        },
        key.private_key,
        algorithm="RS256",
        headers={"kid": key.kid},
    )
    assert env.plans(token) == [{**PRO, "state": 1}]


def test_a_change_shows_in_the_next_check_of_the_same_process(env):
    w = env.world
    w.buy(1)
    u = w.user("ann")
    token = env.token("ann@contoso.com")
    assert env.plans(token) == []  # cached now
    licensing.assign(w.ctx, w.tenant, PLAN, users=[u])
    assert env.plans(token) == [{**PRO, "state": 1}]
    licensing.unassign(w.ctx, w.tenant, PLAN, users=[u])
    assert env.plans(token) == []


def test_if_none_match_answers_304_until_the_answer_changes(env):
    w = env.world
    w.buy(1)
    u = w.user("ann")
    token = env.token("ann@contoso.com")
    first = env.check(token)
    etag = first.headers["etag"]
    again = env.check(token, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    licensing.assign(w.ctx, w.tenant, PLAN, users=[u])
    changed = env.check(token, **{"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_repeated_checks_touch_no_database(env, monkeypatch):
    w = env.world
    w.buy(1)
    licensing.assign(w.ctx, w.tenant, PLAN, users=[w.user("ann")])
    # the feed learns of the assignment at once (this process committed it) and again when its poller next
    # reads the counters, up to 0.25 s later: a version change that would make the next check recompute,
    # so the feed reads them now, before the answer is cached
    env.checker.feed.poll()
    token = env.token("ann@contoso.com")
    assert env.plans(token) == [{**PRO, "state": 1}]
    opened = []
    real_read = type(w.ctx.db).read

    def counting_read(self):  # type: ignore[no-untyped-def]
        # the change feed's poller (a background thread, every 0.25 s) reads the counters table while the
        # checks run on a slow machine: only reads made while serving a request count
        if not threading.current_thread().name.startswith("licensedesk-"):
            opened.append(threading.current_thread().name)
        return real_read(self)

    monkeypatch.setattr(type(w.ctx.db), "read", counting_read)
    for _ in range(20):
        assert env.plans(token) == [{**PRO, "state": 1}]
    assert opened == []


def test_usage_is_recorded_at_most_once_a_minute_without_a_write_per_request(env):
    w = env.world
    w.buy(1)
    u = w.user("ann")
    licensing.assign(w.ctx, w.tenant, PLAN, users=[u])
    token = env.token("ann@contoso.com")
    for _ in range(5):
        env.plans(token)
    assert licensing.user_licenses(w.ctx, w.tenant, u)[0].last_used_at is None  # nothing written yet
    assert env.checker.usage.flush() == 1
    assert env.checker.usage.flush() == 0
    assert licensing.user_licenses(w.ctx, w.tenant, u)[0].last_used_at is not None
    idle = licensing.licensed_users(w.ctx, w.tenant, PLAN, idle_days=1).items
    assert idle == []


def _forged_rsa_token(claims: dict, kid: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _hs256(claims: dict, kid: str, secret: bytes) -> str:
    """The classic key-confusion forgery: HS256 with the issuer's public key as the HMAC secret."""
    signing_input = _b64({"alg": "HS256", "typ": "JWT", "kid": kid}) + "." + _b64(claims)
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).decode().rstrip("=")


@pytest.mark.parametrize(
    "case",
    [
        "forged",
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
        "alg_none",
        "hs256_public_key",
        "unknown_kid",
        "garbage",
        "missing",
    ],
)
def test_bad_tokens_are_refused_with_invalid_token(env, case):
    w = env.world
    w.buy(1)
    licensing.assign(w.ctx, w.tenant, PLAN, users=[w.user("ann")])
    key = env.checker.keys.current(signing.DEV_ISSUER, w.tenant)
    now = int(time.time())
    claims = {
        "iss": "http://testserver/dev-issuer/contoso",
        "aud": "api://innofalls-charts",
        "preferred_username": "ann@contoso.com",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }

    def sign(c: dict, **headers: str) -> str:
        return jwt.encode(c, key.private_key, algorithm="RS256", headers={"kid": key.kid, **headers})

    public_pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    tokens = {
        "forged": _forged_rsa_token(claims, key.kid),
        "expired": sign({**claims, "iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        "not_yet_valid": sign({**claims, "nbf": now + 3600, "exp": now + 7200}),
        "wrong_audience": sign({**claims, "aud": "api://someone-else"}),
        "wrong_issuer": sign({**claims, "iss": "https://issuer.invalid/tenant"}),
        "alg_none": _b64({"alg": "none", "typ": "JWT", "kid": key.kid}) + "." + _b64(claims) + ".",
        "hs256_public_key": _hs256(claims, key.kid, public_pem),
        "unknown_kid": sign(claims, kid="no-such-key"),
        "garbage": "not.a.token",
    }
    r = env.client.get(SERVICE_PLANS) if case == "missing" else env.check(tokens[case])
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "plans" not in r.json()


def test_a_token_of_one_tenant_never_answers_for_another(env):
    w, other = env.world, env.other
    other.buy(1)
    licensing.assign(other.ctx, other.tenant, PLAN, users=[other.user("ann")])  # ann@contoso.com in fabrikam
    w.user("ann")  # and an unlicensed ann in contoso
    assert env.plans(env.token("ann@contoso.com", tenant=w.tenant)) == []
    assert env.plans(env.token("ann@contoso.com", tenant=other.tenant)) == [{**PRO, "state": 1}]
    # contoso's dev key does not make fabrikam's issuer trust a token
    key = env.checker.keys.current(signing.DEV_ISSUER, w.tenant)
    now = int(time.time())
    crossed = jwt.encode(
        {
            "iss": "http://testserver/dev-issuer/fabrikam",
            "aud": "api://innofalls-charts",
            "preferred_username": "ann@contoso.com",
            "iat": now,
            "exp": now + 600,
        },
        key.private_key,
        algorithm="RS256",
        headers={"kid": key.kid},
    )
    assert env.check(crossed).status_code == 401


def test_an_unknown_product_is_404(env):
    r = env.client.get(
        "/v1/licensing/no-such-product/servicePlans", headers={"Authorization": "Bearer x.y.z"}
    )
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_the_lifecycle_shows_in_the_check_at_every_stage(env, clock):
    w = env.world
    w.buy(1, term_ends_at=clock.now() + timedelta(days=1))
    licensing.assign(w.ctx, w.tenant, PLAN, users=[w.user("ann")])
    token = env.token("ann@contoso.com")
    assert env.plans(token) == [{**PRO, "state": 1}]
    for days, state in ((1, 2), (30, 3), (60, 0)):
        clock.advance(days=days)
        billing.advance_lifecycle(w.ctx)
        assert env.plans(token) == [{**PRO, "state": state}]


def test_group_membership_changes_show_once_processed(env):
    w = env.world
    w.buy(5)
    g = w.group("Finance")
    licensing.assign(w.ctx, w.tenant, PLAN, groups=[g])
    processing.drain(w.ctx)
    u = w.user("ann")
    token = env.token("ann@contoso.com")
    assert env.plans(token) == []
    directory.add_members(w.ctx, w.tenant, g, users=[u])
    processing.drain(w.ctx)
    assert env.plans(token) == [{**PRO, "state": 1}]


def test_batch_check_for_the_vendors_servers(env):
    w = env.world
    w.buy(1)
    licensing.assign(w.ctx, w.tenant, PLAN, users=[w.user("ann")])
    directory.create_user(w.ctx, w.tenant, "bob@contoso.com", external_id="oid-bob")
    r = env.client.post(
        f"/v1/licensing/{PRODUCT}/check",
        headers={"Authorization": f"Bearer {env.operator}"},
        json={"tenant": "contoso", "users": ["ann@contoso.com", "oid-bob", "nobody@contoso.com"]},
    )
    assert r.status_code == 200
    assert r.json() == {
        "results": [
            {"user": "ann@contoso.com", "plans": [{**PRO, "state": 1}]},
            {"user": "oid-bob", "plans": []},
            {"user": "nobody@contoso.com", "plans": []},
        ]
    }
    too_many = env.client.post(
        f"/v1/licensing/{PRODUCT}/check",
        headers={"Authorization": f"Bearer {env.operator}"},
        json={"tenant": "contoso", "users": [f"u{i}@contoso.com" for i in range(1001)]},
    )
    assert too_many.status_code in (400, 422)


def test_batch_check_with_a_foreign_tenant_token_is_404(env):
    from licensedesk.auth import service as auth

    _token, reader = auth.create_token(env.world.ctx, "reader", tenant_ref=env.other.tenant)
    r = env.client.post(
        f"/v1/licensing/{PRODUCT}/check",
        headers={"Authorization": f"Bearer {reader}"},
        json={"tenant": "contoso", "users": ["ann@contoso.com"]},
    )
    assert r.status_code == 404


def test_signed_license_verifies_with_the_published_keys_and_survives_rotation(env):
    w = env.world
    w.buy(1)
    u = w.user("ann")
    licensing.assign(w.ctx, w.tenant, PLAN, users=[u])
    token = env.token("ann@contoso.com")
    r = env.client.get(f"/v1/licensing/{PRODUCT}/license", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/jwt")
    jws = r.text
    header = jwt.get_unverified_header(jws)
    assert header["alg"] == "EdDSA"

    def verify(compact: str) -> dict:
        keys = env.client.get("/.well-known/jwks.json").json()["keys"]
        jwk = next(k for k in keys if k["kid"] == jwt.get_unverified_header(compact)["kid"])
        return jwt.decode(
            compact, jwt.PyJWK(jwk).key, algorithms=["EdDSA"], audience="api://innofalls-charts"
        )

    claims = verify(jws)
    assert claims["sub"] == u and claims["tid"] == w.tenant
    assert claims["plans"] == [{**PRO, "state": 1}] and claims["exp"] - claims["iat"] == 3600
    env.checker.keys.rotate(signing.LICENSE, publish_for=timedelta(hours=1))
    assert len(env.client.get("/.well-known/jwks.json").json()["keys"]) == 2
    assert verify(jws)["sub"] == u  # the old license still verifies
    fresh = env.client.get(
        f"/v1/licensing/{PRODUCT}/license", headers={"Authorization": f"Bearer {token}"}
    ).text
    assert jwt.get_unverified_header(fresh)["kid"] != header["kid"]
    assert verify(fresh)["sub"] == u


def test_the_dev_issuer_publishes_its_keys(env):
    doc = env.client.get("/dev-issuer/contoso/.well-known/openid-configuration").json()
    assert doc["issuer"] == "http://testserver/dev-issuer/contoso"
    keys = env.client.get("/dev-issuer/contoso/.well-known/jwks.json").json()["keys"]
    token = env.token("ann@contoso.com")
    assert jwt.get_unverified_header(token)["kid"] in [k["kid"] for k in keys]


def test_visuals_in_other_origins_may_call_the_check(env):
    pre = env.client.options(
        SERVICE_PLANS,
        headers={
            "Origin": "https://app.powerbi.com",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in pre.headers["access-control-allow-headers"]
    w = env.world
    w.user("ann")
    r = env.check(env.token("ann@contoso.com"))
    assert r.headers["access-control-allow-origin"] == "*"
    assert "ETag" in r.headers["access-control-expose-headers"]
    bad = env.check("x.y.z")
    assert bad.status_code == 401 and bad.headers["access-control-allow-origin"] == "*"
