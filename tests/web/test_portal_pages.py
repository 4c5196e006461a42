"""Portal pages: roles decide what is shown (a reader sees no button that would fail), a session of one
tenant never sees another, refusals read as sentences, every list is paged."""

from __future__ import annotations

import re

from licensedesk.directory import service as directory
from licensedesk.licensing import service as licensing
from tests.web.conftest import csrf
from tests.world import PLAN

PLAN_URL = f"/admin/licenses/{PLAN}"
WRITE_MARKS = ('id="assign-button"', 'name="users" value=', ">Reprocess<", "Unassign selected")


def test_a_reader_sees_no_button_that_would_fail(portal):
    c = portal.signed_in("reader")
    pages = [
        c.get(PLAN_URL).text,
        c.get(f"{PLAN_URL}?tab=groups").text,
        c.get(f"{PLAN_URL}?tab=subscriptions").text,
    ]
    for html in pages:
        for mark in (*WRITE_MARKS, 'name="quantity"', "Reassign to"):
            assert mark not in html
    assert "Ada Contoso" in pages[0]  # but reads everything
    # and the actions themselves are refused, whatever the page showed
    token = csrf(pages[0])
    ada = portal.a.users["ada@contoso.example"]
    refused = c.post(f"{PLAN_URL}/unassign", data={"users": ada, "csrf_token": token})
    assert refused.status_code == 403 and "role does not allow" in refused.text
    assert c.get(f"{PLAN_URL}/assign").status_code == 403
    assert licensing.license_overview(portal.ctx, portal.a.id, PLAN).assigned == 3


def test_each_role_sees_the_buttons_its_permissions_allow(portal):
    licenses = portal.signed_in("license_admin")
    html = licenses.get(PLAN_URL).text + licenses.get(f"{PLAN_URL}?tab=groups").text
    assert all(mark in html for mark in WRITE_MARKS)
    assert 'name="quantity"' not in licenses.get(f"{PLAN_URL}?tab=subscriptions").text
    billing = portal.signed_in("billing_admin")
    assert 'name="quantity"' in billing.get(f"{PLAN_URL}?tab=subscriptions").text
    html = billing.get(PLAN_URL).text + billing.get(f"{PLAN_URL}?tab=groups").text
    assert not any(mark in html for mark in WRITE_MARKS)


def test_a_session_of_one_tenant_never_sees_another(portal):
    c = portal.signed_in("global_admin")
    zed = portal.b.users["zed@fabrikam.example"]
    b_group = portal.b.groups["Analysts"]
    everything = "".join(
        c.get(p).text for p in ("/admin/licenses", PLAN_URL, "/admin/users", "/admin/groups", "/admin/audit")
    )
    assert "Fabrikam" not in everything and "fabrikam" not in everything
    for path in (f"/admin/users/{zed}", f"/admin/groups/{b_group}", f"{PLAN_URL}/groups/{b_group}/state"):
        assert c.get(path).status_code == 404, path
    assert "fabrikam" not in c.get("/admin/users?q=zed").text.lower()
    token = csrf(c.get(PLAN_URL).text)
    assign = c.post(f"{PLAN_URL}/assign", data={"csrf_token": token, "users": zed, "do": "assign"})
    assert assign.status_code == 404
    assert licensing.license_overview(portal.ctx, portal.b.id, PLAN).assigned == 3
    csv = c.get("/admin/audit.csv").text
    assert "fabrikam" not in csv.lower() and zed not in csv


def test_a_conflict_reads_as_a_sentence(portal):
    c = portal.signed_in("global_admin")
    cy = portal.a.users["cy@contoso.example"]  # licensed only through the Analysts group
    token = csrf(c.get(PLAN_URL).text)
    answer = c.post(f"{PLAN_URL}/unassign", data={"users": cy, "csrf_token": token})
    assert answer.status_code == 409
    alert = re.search(r'role="alert">([^<]*)<', answer.text).group(1)
    assert "only through the group Analysts contoso" in alert and "remove it on the group" in alert
    assert "{" not in alert and "license_inherited" not in answer.text


def test_assign_dialog_reports_the_dry_run_and_refuses_when_short(portal):
    c = portal.signed_in("license_admin")
    ids = list(portal.a.users.values())
    token = csrf(c.get(f"{PLAN_URL}/assign").text)
    # 3 seats, all taken: one more user needs 1 with 0 available
    picked = c.post(
        f"{PLAN_URL}/assign?part=picked",
        data={"csrf_token": token, "add": f"user:{ids[1]}"},
        headers={"HX-Request": "true"},
    )
    assert "Needs <strong>1</strong> license, <strong>0</strong> available." in picked.text
    assert re.search(r'id="assign-submit" disabled', picked.text)
    assert "Not enough licenses" in picked.text
    refused = c.post(f"{PLAN_URL}/assign", data={"csrf_token": token, "users": ids[1], "do": "assign"})
    assert refused.status_code == 409 and "only 0 are available" in refused.text
    partial = c.post(
        f"{PLAN_URL}/assign",
        data={"csrf_token": token, "users": ids[1], "allow_partial": "on", "do": "assign"},
    )
    assert partial.status_code == 303
    assert licensing.license_overview(portal.ctx, portal.a.id, PLAN).waiting == 1


def test_search_answers_at_most_twenty_users_and_groups_told_apart(portal):
    for i in range(25):
        directory.create_user(portal.ctx, portal.a.id, f"sam{i:02d}@contoso.example", f"Sam {i:02d}")
    directory.create_group(portal.ctx, portal.a.id, "Sam's team")
    c = portal.signed_in("license_admin")
    token = csrf(c.get(f"{PLAN_URL}/assign").text)
    html = c.post(
        f"{PLAN_URL}/assign?part=results",
        data={"csrf_token": token, "q": "sam"},
        headers={"HX-Request": "true"},
    ).text
    assert html.count('name="add"') == 20
    assert (
        'class="kind group">Group<'
        in c.post(
            f"{PLAN_URL}/assign?part=results",
            data={"csrf_token": token, "q": "sam's"},
            headers={"HX-Request": "true"},
        ).text
    )


def test_the_users_browser_pages_server_side(portal):
    for i in range(120):
        directory.create_user(portal.ctx, portal.a.id, f"u{i:03d}@contoso.example", f"User {i:03d}")
    c = portal.signed_in("reader")
    first = c.get("/admin/users").text
    rows = re.findall(r'<a href="/admin/users/([0-9a-f-]{36})">', first)
    assert len(rows) == 50
    nxt = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    second = c.get(nxt).text
    more = re.findall(r'<a href="/admin/users/([0-9a-f-]{36})">', second)
    assert len(more) == 50 and not set(rows) & set(more)
    assert "First page" in second
