"""Portal sign-in and sessions: signed HttpOnly SameSite cookies holding no secret, CSRF on every form,
expiry, one-time links, sign-out."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

from sqlalchemy import select

from licensedesk.auth import service as auth
from licensedesk.db.schema import portal_sessions, portal_sign_in_links
from licensedesk.licensing import service as licensing
from licensedesk.web import sessions
from tests.web.conftest import csrf
from tests.world import PLAN

PLAN_URL = f"/admin/licenses/{PLAN}"


def _cookie_payload(value: str) -> dict:
    body = value.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def test_token_sign_in_sets_a_signed_httponly_lax_cookie_that_holds_no_secret(portal):
    c = portal.client()
    secret = portal.a.tokens["license_admin"]
    answer = c.post("/admin/sign-in", data={"token": secret, "next": "/admin/users"})
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/users"
    header = answer.headers["set-cookie"]
    assert header.startswith(f"{sessions.COOKIE}=")
    lowered = header.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "path=/admin" in lowered
    assert "secure" not in lowered  # plain http here
    value = c.cookies[sessions.COOKIE]
    assert secret not in value and secret[3:20] not in value
    payload = _cookie_payload(value)
    principal = auth.authenticate(portal.ctx, secret)
    assert payload["subject"] == principal.id and payload["tenant_id"] == portal.a.id
    assert payload["roles"] == ["license_admin"]
    assert c.get("/admin/users").status_code == 200


def test_the_cookie_is_secure_when_the_request_is_https(portal):
    c = portal.client("https://testserver")
    answer = c.post("/admin/sign-in", data={"token": portal.a.tokens["reader"]})
    assert answer.status_code == 303
    assert "secure" in answer.headers["set-cookie"].lower()


def test_a_wrong_token_is_refused_with_a_sentence_and_no_session(portal):
    c = portal.client()
    answer = c.post("/admin/sign-in", data={"token": "ld_not-a-real-token"})
    assert answer.status_code == 401
    assert "This token is not valid" in answer.text
    assert sessions.COOKIE not in c.cookies
    scim = c.post("/admin/sign-in", data={"token": portal.a.tokens["scim"]})
    assert scim.status_code == 401 and "SCIM" in scim.text


def test_an_operator_names_the_tenant_to_work_in(portal):
    c = portal.client()
    assert c.post("/admin/sign-in", data={"token": portal.operator}).status_code == 401
    answer = c.post("/admin/sign-in", data={"token": portal.operator, "tenant": "fabrikam"})
    assert answer.status_code == 303
    assert "Zed Fabrikam" in c.get("/admin/users").text


def test_sign_in_never_redirects_off_the_portal(portal):
    c = portal.client()
    for target in ("https://evil.example/", "//evil.example/admin", "/v1/tenants"):
        answer = c.post("/admin/sign-in", data={"token": portal.a.tokens["reader"], "next": target})
        assert answer.headers["location"] == "/admin/licenses"


def test_pages_without_a_session_send_to_sign_in(portal):
    c = portal.client()
    answer = c.get("/admin/licenses")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/admin/sign-in?next=/admin/licenses"
    htmx = c.get("/admin/users", headers={"HX-Request": "true"})
    assert htmx.headers["hx-redirect"].startswith("/admin/sign-in")


def test_form_posts_without_the_csrf_token_are_refused_and_change_nothing(portal):
    c = portal.signed_in("global_admin")
    ada = portal.a.users["ada@contoso.example"]
    body = {"users": ada}
    before = licensing.license_overview(portal.ctx, portal.a.id, PLAN).assigned
    for headers, extra in (({}, {}), ({}, {"csrf_token": "forged"}), ({"X-CSRF-Token": "forged"}, {})):
        answer = c.post(f"{PLAN_URL}/unassign", data={**body, **extra}, headers=headers)
        assert answer.status_code == 403, answer.text
        assert "expired" in answer.text
    assert licensing.license_overview(portal.ctx, portal.a.id, PLAN).assigned == before
    # the same post with the page's token (as a field, or as htmx's header) goes through
    token = csrf(c.get(PLAN_URL).text)
    assert c.post(f"{PLAN_URL}/unassign", data=body, headers={"X-CSRF-Token": token}).status_code == 303
    assert licensing.license_overview(portal.ctx, portal.a.id, PLAN).assigned == before - 1
    # a CSRF token belongs to its session: another session's token is refused
    other = portal.signed_in("global_admin")
    assert other.post(f"{PLAN_URL}/unassign", data={**body, "csrf_token": token}).status_code == 403


def test_sign_out_needs_the_csrf_token_and_ends_the_session(portal):
    c = portal.signed_in("reader")
    assert c.post("/admin/sign-out").status_code == 403
    token = csrf(c.get("/admin/licenses").text)
    answer = c.post("/admin/sign-out", data={"csrf_token": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/sign-in"
    assert sessions.COOKIE not in c.cookies
    assert c.get("/admin/licenses").status_code == 303
    audit = portal.signed_in("reader").get("/admin/audit?action=admin.signed_out").text
    assert "admin.signed_out" in audit


def test_a_copy_of_the_cookie_stops_working_when_its_session_signs_out(portal):
    c = portal.signed_in("global_admin")
    copy = portal.client()
    copy.cookies.set(sessions.COOKIE, c.cookies[sessions.COOKIE], path="/admin")
    assert copy.get("/admin/licenses").status_code == 200
    other = portal.signed_in("global_admin")  # another session of the same token lives on
    token = csrf(c.get("/admin/licenses").text)
    assert c.post("/admin/sign-out", data={"csrf_token": token}).status_code == 303
    for page in ("/admin/licenses", "/admin/users", PLAN_URL):
        answer = copy.get(page)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/sign-in"), page
    before = licensing.license_overview(portal.ctx, portal.a.id, PLAN).assigned
    ada = portal.a.users["ada@contoso.example"]
    refused = copy.post(f"{PLAN_URL}/unassign", data={"users": ada, "csrf_token": token})
    assert refused.status_code == 303 and refused.headers["location"] == "/admin/sign-in"
    assert licensing.license_overview(portal.ctx, portal.a.id, PLAN).assigned == before
    assert other.get("/admin/licenses").status_code == 200


def test_sessions_are_stored_only_as_hashes_and_expired_ones_are_cleaned_up(portal):
    c = portal.signed_in("reader")
    with portal.ctx.db.read() as conn:
        rows = conn.execute(select(portal_sessions)).all()
    assert len(rows) == 1 and rows[0].tenant_id == portal.a.id and rows[0].kind == "token"
    sid = _cookie_payload(c.cookies[sessions.COOKIE])["sid"]
    assert sid not in json.dumps([list(map(str, r)) for r in rows])
    portal.ctx.clock.advance(sessions.SESSION_LIFETIME + timedelta(seconds=1))
    assert c.get("/admin/licenses").status_code == 303
    portal.signed_in("reader")  # a new sign-in drops the expired row
    with portal.ctx.db.read() as conn:
        assert len(conn.execute(select(portal_sessions)).all()) == 1


def test_a_session_expires_after_its_lifetime(portal):
    c = portal.signed_in("reader")
    assert c.get("/admin/licenses").status_code == 200
    portal.ctx.clock.advance(sessions.SESSION_LIFETIME - timedelta(minutes=1))
    assert c.get("/admin/licenses").status_code == 200
    portal.ctx.clock.advance(minutes=2)
    answer = c.get("/admin/licenses")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/admin/sign-in")


def test_revoking_the_token_ends_its_sessions(portal):
    c = portal.signed_in("global_admin")
    assert c.get("/admin/licenses").status_code == 200
    principal = auth.authenticate(portal.ctx, portal.a.tokens["global_admin"])
    auth.revoke_token(portal.ctx, portal.a.id, principal.id)
    assert c.get("/admin/licenses").status_code == 303


def test_a_tampered_cookie_is_refused(portal):
    c = portal.signed_in("reader")
    value = c.cookies[sessions.COOKIE]
    body, mac = value.split(".")
    payload = _cookie_payload(value)
    payload["roles"] = ["global_admin"]
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    for bad in (f"{forged}.{mac}", f"{body}.{mac[:-2]}AA", "garbage", f"{body}."):
        fresh = portal.client()
        fresh.cookies.set(sessions.COOKIE, bad, path="/admin")
        assert fresh.get("/admin/licenses").status_code == 303, bad


LINK_FORM = re.compile(r'name="code" value="([^"]+)"')


def _use_link(c, secret: str):  # type: ignore[no-untyped-def]
    """Open the link (a GET: the page that asks), then press its button (the POST that signs in)."""
    page = c.get(f"/admin/sign-in/link?code={secret}")
    if page.status_code != 200:
        return page
    assert LINK_FORM.search(page.text).group(1) == secret
    return c.post("/admin/sign-in/link", data={"code": secret, "csrf_token": csrf(page.text)})


def test_a_sign_in_link_works_once_is_stored_hashed_and_expires(portal):
    secret = sessions.create_sign_in_link(portal.ctx, "contoso")
    with portal.ctx.db.read() as conn:
        rows = conn.execute(select(portal_sign_in_links)).all()
    assert len(rows) == 1 and secret not in json.dumps([list(map(str, r)) for r in rows])
    c = portal.client()
    answer = _use_link(c, secret)
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/licenses"
    assert "Ada Contoso" in c.get(f"{PLAN_URL}").text
    again = portal.client().get(f"/admin/sign-in/link?code={secret}")
    assert again.status_code == 401 and "used or has expired" in again.text
    late = sessions.create_sign_in_link(portal.ctx, "contoso")
    portal.ctx.clock.advance(sessions.LINK_LIFETIME + timedelta(seconds=1))
    assert _use_link(portal.client(), late).status_code == 401
    assert portal.client().get("/admin/sign-in/link?code=ldl_unknown").status_code == 401


def test_opening_a_sign_in_link_only_asks_and_uses_nothing(portal):
    """Link previewers and scanners fetch links: a GET shows who would sign in where, and only the button
    (a POST carrying the page's token) uses the link up."""
    secret = sessions.create_sign_in_link(portal.ctx, "contoso", "license_admin", name="Ops on call")
    for _ in range(3):  # a chat's previewer, a mail scanner, the admin
        page = portal.client().get(f"/admin/sign-in/link?code={secret}")
        assert page.status_code == 200
        assert "Sign in as <strong>Ops on call</strong>" in page.text and "license admin" in page.text
        assert "Contoso" in page.text and sessions.COOKIE not in page.cookies
    with portal.ctx.db.read() as conn:
        assert conn.execute(select(portal_sign_in_links.c.used_at)).scalar_one() is None
        assert conn.execute(select(portal_sessions)).first() is None
    c = portal.client()
    assert _use_link(c, secret).status_code == 303
    assert c.get("/admin/licenses").status_code == 200
    assert _use_link(portal.client(), secret).status_code == 401


def test_the_sign_in_link_button_is_refused_without_its_page(portal):
    secret = sessions.create_sign_in_link(portal.ctx, "contoso")
    opened = portal.client()
    token = csrf(opened.get(f"/admin/sign-in/link?code={secret}").text)
    # another site cannot post the form: without the page's cookie, with a forged token, from elsewhere
    for c, data, headers in (
        (portal.client(), {"code": secret, "csrf_token": token}, {}),
        (opened, {"code": secret, "csrf_token": "forged"}, {}),
        (opened, {"code": secret}, {}),
        (opened, {"code": secret, "csrf_token": token}, {"Origin": "https://evil.example"}),
    ):
        answer = c.post("/admin/sign-in/link", data=data, headers=headers)
        assert answer.status_code == 403 and sessions.COOKIE not in c.cookies
    with portal.ctx.db.read() as conn:
        assert conn.execute(select(portal_sign_in_links.c.used_at)).scalar_one() is None
    # the page's own post with a wrong code signs nobody in
    bad = opened.post("/admin/sign-in/link", data={"code": "ldl_unknown", "csrf_token": token})
    assert bad.status_code == 401 and "used or has expired" in bad.text
    ok = opened.post("/admin/sign-in/link", data={"code": secret, "csrf_token": token})
    assert ok.status_code == 303 and sessions.COOKIE in opened.cookies


def test_posts_from_another_site_are_refused(portal):
    c = portal.client()
    evil = {"Origin": "https://evil.example"}
    answer = c.post("/admin/sign-in", data={"token": portal.a.tokens["reader"]}, headers=evil)
    assert answer.status_code == 403 and sessions.COOKIE not in c.cookies
    same = c.post(
        "/admin/sign-in", data={"token": portal.a.tokens["reader"]}, headers={"Origin": "http://testserver"}
    )
    assert same.status_code == 303
    token = csrf(c.get("/admin/licenses").text)
    assert c.post("/admin/sign-out", data={"csrf_token": token}, headers=evil).status_code == 403
    assert c.get("/admin/licenses").status_code == 200  # still signed in
