"""Portal sign-in through the tenant's identity provider: authorization code + PKCE against a real, running
OpenID Connect provider (oidc-provider-mock, an Authlib-based provider server started by the test)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import httpx
import oidc_provider_mock as provider_mock
import pytest
import werkzeug.serving
from fastapi.testclient import TestClient

from licensedesk.app import create_app
from licensedesk.settings import Settings
from licensedesk.tenancy import service as tenancy
from licensedesk.web import sessions

CALLBACK = "http://testserver/admin/sign-in/oidc/callback"


@pytest.fixture(scope="module")
def idp() -> Iterator[dict[str, Any]]:
    """The provider, served on a thread; it records the form of every request to its token endpoint, so a
    test can see on the wire what the portal sends there (this provider does not check PKCE itself: it
    stores no code_challenge with its codes and registers no RFC 7636 extension, up to its newest release)."""
    users = [
        provider_mock.User(
            sub="alice", claims={"preferred_username": "alice@contoso.example", "roles": ["license_admin"]}
        ),
        provider_mock.User(sub="bob", claims={"preferred_username": "bob@contoso.example"}),
    ]
    token_requests: list[dict[str, str]] = []
    app = flask.Flask("oidc-provider")
    app.secret_key = secrets.token_bytes(16)

    @app.before_request
    def record() -> None:
        if flask.request.path == "/oauth2/token":
            token_requests.append(flask.request.form.to_dict())

    provider_mock.init_app(app, require_client_registration=True, user_claims=users)
    server = werkzeug.serving.make_server("localhost", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        base = f"http://localhost:{server.server_port}"
        client = httpx.post(f"{base}/oauth2/clients", json={"redirect_uris": [CALLBACK]}).json()
        yield {
            "issuer": base,
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            "token_requests": token_requests,
        }
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()


@pytest.fixture
def oidc_portal(portal, idp, database_url):  # type: ignore[no-untyped-def]
    tenancy.update_tenant(portal.ctx, portal.a.id, issuer=idp["issuer"], jwks_uri=f"{idp['issuer']}/jwks")
    settings = Settings(
        database_url=database_url,
        portal_client_id=idp["client_id"],
        portal_client_secret=idp["client_secret"],
    )
    app = create_app(settings, db=portal.ctx.db, clock=portal.ctx.clock, run_worker=False, migrate=False)
    with TestClient(app, follow_redirects=False) as client:
        yield client


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _authorize_at_the_provider(location: str, sub: str) -> str:
    """What the browser does at the provider: choose the account; answers where it is sent back."""
    answer = httpx.post(location, data={"sub": sub}, follow_redirects=False)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def test_an_admin_signs_in_with_the_identity_provider_and_gets_the_roles_it_names(oidc_portal, portal, idp):
    c = oidc_portal
    start = c.get("/admin/sign-in/oidc", params={"tenant": "contoso"})
    assert start.status_code == 303
    location = start.headers["location"]
    query = parse_qs(urlsplit(location).query)
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["redirect_uri"] == [CALLBACK] and "openid" in query["scope"][0].split()
    assert "httponly" in start.headers["set-cookie"].lower()
    # PKCE on our side: the challenge is the S256 of the verifier kept (signed) for the code exchange
    pending = json.loads(_unb64(c.cookies["ld_oidc"].split(".")[0]))
    digest = hashlib.sha256(pending["verifier"].encode()).digest()
    assert query["code_challenge"] == [base64.urlsafe_b64encode(digest).decode().rstrip("=")]
    assert query["state"] == [pending["state"]] and query["nonce"] == [pending["nonce"]]

    back = _authorize_at_the_provider(location, "alice")
    assert back.startswith(CALLBACK)
    del idp["token_requests"][:]
    done = c.get(back)
    assert done.status_code == 303 and done.headers["location"] == "/admin/licenses", done.text
    # on the wire: the portal redeemed the provider's code with the verifier whose S256 is the challenge
    # it sent to the authorization endpoint
    (exchange,) = idp["token_requests"]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["code"] == parse_qs(urlsplit(back).query)["code"][0]
    sent = hashlib.sha256(exchange["code_verifier"].encode()).digest()
    assert base64.urlsafe_b64encode(sent).decode().rstrip("=") == query["code_challenge"][0]
    assert 43 <= len(exchange["code_verifier"]) <= 128  # RFC 7636 section 4.1
    page = c.get("/admin/licenses/innofalls-charts-pro")
    assert page.status_code == 200
    assert "alice@contoso.example" in page.text and "license admin" in page.text
    assert 'id="assign-button"' in page.text  # license_admin may assign
    assert 'name="quantity"' not in c.get("/admin/licenses/innofalls-charts-pro?tab=subscriptions").text
    audit = c.get("/admin/audit?action=admin.signed_in").text
    assert "method: oidc" in audit and "alice@contoso.example" in audit
    # the code was spent: the same callback again is refused
    assert c.get(back).status_code == 401


def test_an_account_without_a_licensedesk_role_is_refused(oidc_portal):
    c = oidc_portal
    location = c.get("/admin/sign-in/oidc", params={"tenant": "contoso"}).headers["location"]
    done = c.get(_authorize_at_the_provider(location, "bob"))
    assert done.status_code == 401 and "no licensedesk role" in done.text
    assert sessions.COOKIE not in c.cookies


def test_a_callback_that_did_not_start_here_is_refused(oidc_portal):
    c = oidc_portal
    location = c.get("/admin/sign-in/oidc", params={"tenant": "contoso"}).headers["location"]
    back = _authorize_at_the_provider(location, "alice")
    forged = back.replace("state=", "state=x")
    assert c.get(forged).status_code == 401
    c.cookies.clear()  # another browser: no pending sign-in
    answer = c.get(back)
    assert answer.status_code == 401 and "did not start here" in answer.text
    assert sessions.COOKIE not in c.cookies


def test_a_tenant_without_an_identity_provider_says_so(oidc_portal):
    answer = oidc_portal.get("/admin/sign-in/oidc", params={"tenant": "fabrikam"})
    assert answer.status_code == 401 and "no identity provider configured" in answer.text
    unknown = oidc_portal.get("/admin/sign-in/oidc", params={"tenant": "nobody"})
    assert unknown.status_code == 401 and "There is no tenant nobody" in unknown.text
