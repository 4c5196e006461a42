"""OIDC access tokens (JWT) of a tenant's admins, validated against the tenant's JWKS (SPEC sections 2
and 10): roles from the `roles` claim, and every forged or misdirected token refused with 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from licensedesk.tenancy import service as tenancy
from tests.api.support import PLAN, Seed, Unchanged, assert_problem, bearer, lenient


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class _Jwks(BaseHTTPRequestHandler):
    documents: dict[str, bytes] = {}
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        body = self.documents.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class Idp:
    """A tiny identity provider on 127.0.0.1: an RSA key, its JWKS, and a token minter."""

    base: str
    key: rsa.RSAPrivateKey
    kid: str
    handler: type[_Jwks]

    @property
    def issuer(self) -> str:
        return f"{self.base}/contoso/v2.0"

    @property
    def jwks_uri(self) -> str:
        return f"{self.base}/contoso/keys"

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def claims(self, roles: list[str], **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": "api://licensedesk",
            "sub": "admin-sub",
            "oid": "11111111-2222-3333-4444-555555555555",
            "preferred_username": "ann.admin@contoso.com",
            "roles": roles,
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, roles: list[str], *, key: Any = None, kid: str | None = None, **overrides: Any) -> str:
        signing = key or self.key
        pem = signing.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return jwt.encode(
            self.claims(roles, **overrides), pem, algorithm="RS256", headers={"kid": kid or self.kid}
        )


@pytest.fixture(scope="module")
def idp() -> Iterator[Idp]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = "k-" + uuid.uuid4().hex[:8]
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "use": "sig", "alg": "RS256"})
    handler = type("Jwks", (_Jwks,), {"documents": {}, "hits": []})
    handler.documents["/contoso/keys"] = json.dumps({"keys": [jwk]}).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Idp(f"http://127.0.0.1:{server.server_address[1]}", key, kid, handler)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def oidc(api, idp):
    """contoso trusts the IdP (set through the API, as the operator); seats and a user to assign."""
    assert api.client.app.state.settings.api_audience == "api://licensedesk"
    r = api.patch(
        f"/v1/tenants/{api.tenant}", {"issuer": idp.issuer, "jwksUri": idp.jwks_uri}, role="operator"
    )
    assert r.status_code == 200, r.text
    assert (r.json()["issuer"], r.json()["jwksUri"]) == (idp.issuer, idp.jwks_uri)
    seed = Seed(api, api.tenant)
    seed.buy(10)
    return seed


def _jwt_call(api: Any, method: str, path: str, token: str, json_body: Any = None) -> Any:
    return lenient(api).request(method, path, json=json_body, headers=bearer(token))


def test_license_admin_jwt_may_assign_but_not_create_users(api, idp, oidc):
    token = idp.token(["license_admin"])
    user = oidc.user()
    r = _jwt_call(
        api, "POST", f"/v1/tenants/{api.tenant}/licenses/{PLAN}/assign", token, {"users": [user["id"]]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["users"] == [{"userId": user["id"], "state": "Active", "error": None}]
    created = _jwt_call(
        api, "POST", f"/v1/tenants/{api.tenant}/users", token, {"userPrincipalName": "nope@contoso.com"}
    )
    assert_problem(created, 403, "forbidden")
    assert api.get(f"/v1/tenants/{api.tenant}/users/nope@contoso.com").status_code == 404

    # the change is audited as the signed-in admin (a user), with the claims' identity
    events = api.get(f"/v1/tenants/{api.tenant}/audit?action=license.assigned&targetId={user['id']}").json()
    [event] = events["items"]
    assert event["actor"]["type"] == "user"
    assert event["actor"]["id"] == "11111111-2222-3333-4444-555555555555"
    assert event["actor"]["name"] == "ann.admin@contoso.com"


def test_reader_jwt_reads_but_may_not_write(api, idp, oidc):
    token = idp.token(["reader"])
    user = oidc.user()
    listed = _jwt_call(api, "GET", f"/v1/tenants/{api.tenant}/users", token)
    assert listed.status_code == 200
    assert user["id"] in [u["id"] for u in listed.json()["items"]]
    assert _jwt_call(api, "GET", f"/v1/tenants/{api.tenant}/licenses", token).status_code == 200
    refused = _jwt_call(
        api, "POST", f"/v1/tenants/{api.tenant}/licenses/{PLAN}/assign", token, {"users": [user["id"]]}
    )
    assert_problem(refused, 403, "forbidden")


def test_global_admin_jwt_may_create_users(api, idp, oidc):
    token = idp.token(["global_admin"])
    r = _jwt_call(
        api, "POST", f"/v1/tenants/{api.tenant}/users", token, {"userPrincipalName": "new@contoso.com"}
    )
    assert r.status_code == 201, r.text


def test_jwt_roles_claim_cannot_make_an_operator(api, idp, oidc):
    """`operator` is not a tenant role: a tenant's IdP cannot grant it, and a JWT without a licensedesk
    role may do nothing."""
    as_operator = idp.token(["operator"])
    r = _jwt_call(api, "POST", "/v1/tenants", as_operator, {"slug": "evil", "name": "Evil"})
    assert r.status_code in (401, 403), r.text
    r = _jwt_call(api, "GET", f"/v1/tenants/{api.other_tenant}", as_operator)
    assert r.status_code in (401, 404), r.text
    r = _jwt_call(api, "GET", f"/v1/tenants/{api.tenant}/users", idp.token(["Directory.Read"]))
    assert r.status_code in (401, 403), r.text
    r = _jwt_call(api, "GET", f"/v1/tenants/{api.tenant}/users", idp.token([]))
    assert r.status_code in (401, 403), r.text


def _alg_none(idp: Idp) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": idp.kid}).encode())
    payload = _b64(json.dumps(idp.claims(["global_admin"])).encode())
    return f"{header}.{payload}."


def _hs256_with_public_key(idp: Idp) -> str:
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": idp.kid}).encode())
    payload = _b64(json.dumps(idp.claims(["global_admin"])).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(idp.public_pem(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


def _forged(idp: Idp) -> str:
    """The right kid and claims, signed by another key."""
    return idp.token(["global_admin"], key=rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _tampered(idp: Idp) -> str:
    """A genuine token whose payload was edited after signing (reader -> global_admin)."""
    header, _payload, signature = idp.token(["reader"]).split(".")
    payload = _b64(json.dumps(idp.claims(["global_admin"])).encode())
    return f"{header}.{payload}.{signature}"


BAD_TOKENS = {
    "expired": lambda idp: idp.token(
        ["global_admin"], exp=int(time.time()) - 3600, iat=int(time.time()) - 7200
    ),
    "not yet valid": lambda idp: idp.token(["global_admin"], nbf=int(time.time()) + 3600),
    "without exp": lambda idp: idp.token(["global_admin"], exp=None),
    "wrong audience": lambda idp: idp.token(["global_admin"], aud="api://innofalls-charts"),
    "no audience": lambda idp: idp.token(["global_admin"], aud=None),
    "wrong issuer": lambda idp: idp.token(["global_admin"], iss=idp.issuer + "/other"),
    "alg none": _alg_none,
    "HS256 signed with the public key": _hs256_with_public_key,
    "unknown kid": lambda idp: idp.token(["global_admin"], kid="unknown-kid"),
    "forged signature": _forged,
    "payload edited after signing": _tampered,
    "truncated": lambda idp: idp.token(["global_admin"]).rsplit(".", 1)[0],
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_invalid_jwts_get_401_and_change_nothing(api, idp, oidc, case):
    good = idp.token(["global_admin"])  # the JWKS is fetched and cached with a valid token first
    assert _jwt_call(api, "GET", f"/v1/tenants/{api.tenant}/users", good).status_code == 200
    token = BAD_TOKENS[case](idp)
    user = oidc.user()
    unchanged = Unchanged(api)
    for method, path, body in (
        ("GET", f"/v1/tenants/{api.tenant}/users", None),
        ("POST", f"/v1/tenants/{api.tenant}/users", {"userPrincipalName": "forged@contoso.com"}),
        ("POST", f"/v1/tenants/{api.tenant}/licenses/{PLAN}/assign", {"users": [user["id"]]}),
    ):
        r = _jwt_call(api, method, path, token, body)
        assert_problem(r, 401, "unauthenticated")
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer")
    unchanged.check(case)


def test_a_contoso_jwt_naming_fabrikam_gets_404(api, idp, oidc):
    token = idp.token(["global_admin"])
    unchanged = Unchanged(api)
    for method, path, body in (
        ("GET", f"/v1/tenants/{api.other_tenant}", None),
        ("GET", "/v1/tenants/fabrikam/users", None),
        ("GET", f"/v1/tenants/{api.other_tenant}/audit", None),
        ("POST", "/v1/tenants/fabrikam/users", {"userPrincipalName": "x@fabrikam.com"}),
        ("PATCH", "/v1/tenants/fabrikam", {"name": "Pwned"}),
    ):
        r = _jwt_call(api, method, path, token, body)
        assert_problem(r, 404, "not_found")
    unchanged.check("contoso JWT on fabrikam")


def test_jwks_is_cached_not_fetched_per_request(api, idp, oidc):
    idp.handler.hits.clear()
    token = idp.token(["reader"])
    for _ in range(5):
        assert _jwt_call(api, "GET", f"/v1/tenants/{api.tenant}/users", token).status_code == 200
    assert idp.handler.hits.count("/contoso/keys") == 1


def test_another_tenant_claiming_contosos_issuer_does_not_capture_contosos_admins(api, idp, oidc):
    """A tenant's global admin sets its issuer and JWKS to contoso's (they are free text): contoso's
    admin tokens must still act in contoso, never in the other tenant. The tenant whose id sorts first is
    the one a first-match lookup would pick, so the claiming tenant is made to sort first."""
    ctx = api.ctx
    for i in range(64):
        mallory = tenancy.create_tenant(ctx, f"mallory-{i}", "Mallory")
        if mallory.id < api.tenant:
            break
    else:  # pragma: no cover - 2**-64
        pytest.skip("no tenant id sorted before contoso's")
    mallory_admin = Seed(api, mallory.id).token("global_admin")[1]
    claim = lenient(api).patch(
        f"/v1/tenants/{mallory.id}",
        json={"issuer": idp.issuer, "jwksUri": idp.jwks_uri},
        headers=bearer(mallory_admin),
    )
    assert claim.status_code in (200, 409), claim.text
    token = idp.token(["global_admin"])
    own = _jwt_call(api, "GET", f"/v1/tenants/{api.tenant}/users", token)
    assert own.status_code == 200, (
        f"contoso's admin lost contoso after another tenant claimed its issuer: {own.status_code} {own.text}"
    )
    theirs = _jwt_call(api, "GET", f"/v1/tenants/{mallory.id}/users", token)
    assert theirs.status_code == 404, f"contoso's admin token acts in another tenant: {theirs.status_code}"
