"""The admin portal in headless Chromium against a real `licensedesk serve --demo`: the vendor help page's
flow (sign in, Licenses, assign a user, a group too big for the free seats, as many as possible, unassign,
reassign, reprocess, the audit log, sign out) and an assignment made with the keyboard only.

The demo: Pro has 25 seats, 16 assigned (the Finance group's 11 members and 5 direct users), 9 free;
Sales has 18 members, none of them holding Pro."""

from __future__ import annotations

import re

import httpx

from tests.e2e.conftest import screenshot

PRO = "/admin/licenses/innofalls-charts-pro"


def sign_in_link(demo_server) -> str:  # type: ignore[no-untyped-def]
    banner = demo_server.output.read_text(errors="replace")
    match = re.search(r"(http://\S+/admin/sign-in/link\?code=\S+)", banner)
    assert match, banner
    return match.group(1)


def counts(page) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return {k: int(page.locator(f"#count-{k}").inner_text()) for k in ("assigned", "available", "waiting")}


def test_help_page_flow_in_the_browser(demo_server, page):  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    # the one-time link from the banner asks first (a link previewer fetching it uses nothing), and signs
    # in once, with its button
    link = sign_in_link(demo_server)
    preview = httpx.get(link, timeout=10)
    assert preview.status_code == 200 and "Sign in as" in preview.text
    page.goto(link)
    expect(page.get_by_role("heading", name="Sign in to Contoso")).to_be_visible()
    expect(page.get_by_role("main")).to_contain_text("global admin")
    screenshot(page, "00-sign-in-link")
    page.get_by_role("button", name="Sign in to Contoso").click()
    expect(page.get_by_role("heading", name="Licenses")).to_be_visible()
    screenshot(page, "01-licenses")
    pro_row = page.get_by_role("row", name=re.compile("Charts Pro"))
    expect(pro_row).to_contain_text("Innofalls Charts")
    expect(pro_row.get_by_role("cell").nth(1)).to_have_text("25")  # purchased
    expect(pro_row.get_by_role("cell").nth(3)).to_have_text("9")  # available

    # the link is spent: a second use (here, another browser context) is refused
    other = page.context.browser.new_context()
    again = other.new_page()
    again.goto(link)
    expect(again.get_by_role("alert")).to_contain_text("used or has expired")
    other.close()

    page.get_by_role("link", name="Pro").click()
    expect(page.get_by_role("heading", name=re.compile("Innofalls Charts Pro"))).to_be_visible()
    assert counts(page) == {"assigned": 16, "available": 9, "waiting": 0}
    # a license held only through a group cannot be selected on the user, and says why
    emea_row = page.get_by_role("row", name=re.compile("Adele"))
    expect(emea_row).to_contain_text("remove it on the group")
    expect(emea_row.get_by_role("checkbox")).to_have_count(0)
    screenshot(page, "02-plan-users")

    # assign one user: as-you-type search, a chip, the live line from dryRun (in a modal dialog)
    page.get_by_role("link", name="Assign licenses").click()
    expect(page.get_by_role("dialog", name=re.compile("Assign licenses"))).to_be_visible()
    expect(page.get_by_label("Search for users or groups")).to_be_focused()
    page.get_by_label("Search for users or groups").fill("chiara")
    page.get_by_role("button", name=re.compile("Add user Chiara")).click()
    expect(page.locator("#needs")).to_have_text("Needs 1 license, 9 available.")
    expect(page.get_by_role("list", name="Chosen")).to_contain_text("Chiara Conti")
    # the search result says it is chosen (as without JavaScript), rather than offering Add again
    expect(page.get_by_role("list", name="Search results")).to_contain_text("added")
    expect(page.get_by_role("button", name=re.compile("Add user Chiara"))).to_have_count(0)
    screenshot(page, "03-assign-user")
    page.locator("#assign-submit").click()
    expect(page.get_by_role("status").filter(has_text="Assigned to 1 user.")).to_be_visible()
    assert counts(page) == {"assigned": 17, "available": 8, "waiting": 0}

    # a group too big for the free seats: Assign is disabled, and the reason says so
    page.get_by_role("link", name="Assign licenses").click()
    expect(page.get_by_label("Search for users or groups")).to_be_focused()
    page.get_by_label("Search for users or groups").fill("sales")
    page.get_by_role("button", name="Add group Sales").click()
    expect(page.locator("#needs")).to_have_text("Needs 18 licenses, 8 available.")
    expect(page.locator("#assign-submit")).to_be_disabled()
    expect(page.locator("#assign-reason")).to_contain_text("Not enough licenses")
    expect(page.locator("#assign-submit")).to_have_attribute("aria-describedby", "assign-reason")
    screenshot(page, "04-assign-group-too-big")

    # "as many as possible": accepted, the group is processed, 10 members wait
    page.get_by_label(re.compile("Assign as many as possible")).check()
    expect(page.locator("#assign-submit")).to_be_enabled()
    expect(page.locator("#assign-reason")).to_contain_text("10 will wait")
    page.locator("#assign-submit").click()
    expect(page.get_by_role("status").filter(has_text="Assigned to 1 group.")).to_be_visible()
    sales_state = page.get_by_role("row", name=re.compile("Sales")).locator(".badge")
    expect(sales_state).to_contain_text("Complete", timeout=15000)  # updates by itself
    expect(page.locator("#count-waiting")).to_have_text("10", timeout=15000)
    expect(page.locator("#count-available")).to_have_text("0")
    screenshot(page, "05-plan-groups-waiting")

    # unassign the direct user: the longest-waiting Sales member gets the seat
    page.goto(demo_server.base + PRO + "?tab=users")
    page.get_by_label("Select Chiara Conti").check()
    page.get_by_role("button", name="Unassign selected").click()
    expect(page.get_by_role("status").filter(has_text="Unassigned from 1 user.")).to_be_visible()
    assert counts(page) == {"assigned": 25, "available": 0, "waiting": 9}

    # reassign a direct license while the pool is full
    page.get_by_role("row", name=re.compile("Mira Kaur")).get_by_role("link", name="Reassign to…").click()
    expect(page.get_by_role("heading", name=re.compile("Reassign Pro from Mira Kaur"))).to_be_visible()
    page.get_by_label("Reassign to…").fill("chiara")
    expect(page.get_by_role("button", name="Reassign to Chiara Conti")).to_be_visible()
    screenshot(page, "06a-reassign")
    page.get_by_role("button", name="Reassign to Chiara Conti").click()
    expect(page.get_by_role("status").filter(has_text="License reassigned.")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Chiara Conti"))).to_contain_text("Direct")
    expect(page.get_by_role("row", name=re.compile("Mira Kaur"))).to_have_count(0)
    screenshot(page, "06-plan-after-reassign")

    # reprocess a group
    page.goto(demo_server.base + PRO + "?tab=groups")
    page.get_by_role("row", name=re.compile("^Finance ")).get_by_role("button", name="Reprocess").click()
    expect(page.get_by_role("status").filter(has_text="Reprocessing started.")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("^Finance ")).locator(".badge")).to_contain_text(
        "Complete", timeout=15000
    )

    # a refusal reads as a sentence, never as JSON: lower the quantity below what is assigned
    page.get_by_role("link", name="Subscriptions").click()
    page.get_by_label("Quantity").fill("5")
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("25 are assigned. Unassign licenses first")
    assert "{" not in alert.inner_text()
    screenshot(page, "07-plan-subscriptions-refused")

    # the audit log shows each step
    page.get_by_role("link", name="Audit").click()
    table = page.get_by_role("table")
    for action in ("admin.signed_in", "license.assigned", "license.unassigned", "license.reassigned"):
        expect(table).to_contain_text(action)
    page.get_by_label("Action").fill("license.reassigned")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_role("table").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name="Export CSV")).to_have_attribute(
        "href", "/admin/audit.csv?action=license.reassigned"
    )
    screenshot(page, "08-audit")

    # the users and groups browsers, a user page and a group page
    page.get_by_role("link", name="Users", exact=True).click()
    expect(page.get_by_role("table").locator("tbody tr")).to_have_count(50)  # a page of 50, then Next
    expect(page.get_by_role("link", name="Next page »")).to_be_visible()
    screenshot(page, "09a-users")
    page.get_by_label("Search users").fill("chiara")
    expect(page.get_by_role("table").locator("tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/admin/users\?q=chiara$"))  # the search is in the address
    page.get_by_role("link", name="Chiara Conti").click()
    expect(page.get_by_role("row", name=re.compile("Innofalls Charts Pro"))).to_contain_text("Direct")
    screenshot(page, "09-user")
    page.get_by_role("link", name="Groups", exact=True).click()
    screenshot(page, "10a-groups")
    page.get_by_role("link", name="Finance", exact=True).click()
    expect(page.get_by_role("heading", name="Nested groups")).to_be_visible()
    expect(page.get_by_role("link", name="Finance-EMEA")).to_be_visible()
    screenshot(page, "10-group")

    # sign out: the session is gone, also for a copy of its cookie
    copied = page.context.cookies()
    assert any(c["name"] == "ld_admin" for c in copied)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(demo_server.base + "/admin/licenses")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "11-sign-in")
    thief = page.context.browser.new_context()
    thief.add_cookies(copied)
    stolen = thief.new_page()
    stolen.goto(demo_server.base + "/admin/licenses")
    expect(stolen.get_by_role("heading", name="Sign in")).to_be_visible()
    thief.close()


def test_keyboard_only_assign(demo_server, page):  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    kb = page.keyboard
    page.goto(demo_server.base + "/admin/sign-in")
    page.get_by_label("API token").focus()
    kb.type(demo_server.admin_token)
    kb.press("Enter")
    expect(page.get_by_role("heading", name="Licenses")).to_be_visible()
    page.goto(demo_server.base + PRO + "/assign")
    # the search field has the focus; type, then Tab to the first result's Add button
    expect(page.get_by_label("Search for users or groups")).to_be_focused()
    kb.type("marketing")
    add = page.get_by_role("button", name="Add group Marketing")
    expect(add).to_be_visible()
    kb.press("Tab")  # the Search button
    kb.press("Tab")
    expect(add).to_be_focused()
    kb.press("Enter")
    expect(page.locator("#needs")).to_contain_text(re.compile(r"Needs \d+ licenses, \d+ available"))
    # the pool is full after the first test: tick "as many as possible" and assign, all by keyboard
    checkbox = page.get_by_label(re.compile("Assign as many as possible"))
    for _ in range(10):  # past the chip's remove button
        if page.evaluate("document.activeElement.id") == "allow-partial":
            break
        kb.press("Tab")
    expect(checkbox).to_be_focused()
    kb.press("Space")
    expect(checkbox).to_be_checked()
    expect(page.locator("#assign-submit")).to_be_enabled()
    kb.press("Tab")
    expect(page.locator("#assign-submit")).to_be_focused()
    screenshot(page, "12-keyboard-assign")
    kb.press("Enter")
    expect(page.get_by_role("status").filter(has_text="Assigned to 1 group.")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Marketing"))).to_be_visible()


def test_the_portal_works_without_javascript(demo_server, browser):  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False, viewport={"width": 900, "height": 600})
    page = context.new_page()
    try:
        page.goto(demo_server.base + "/admin/sign-in")
        page.get_by_label("API token").fill(demo_server.admin_token)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page.get_by_role("heading", name="Licenses")).to_be_visible()
        page.get_by_role("link", name="Basic").click()
        before = counts(page)
        page.get_by_role("link", name="Assign licenses").click()  # a page of its own without JavaScript
        page.get_by_label("Search for users or groups").fill("chiara")
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_role("button", name=re.compile("Add user Chiara")).click()
        expect(page.locator("#needs")).to_have_text(f"Needs 1 license, {before['available']} available.")
        screenshot(page, "13-assign-without-javascript")
        page.locator("#assign-submit").click()
        expect(page.get_by_role("status").filter(has_text="Assigned to 1 user.")).to_be_visible()
        assert counts(page)["assigned"] == before["assigned"] + 1
        page.get_by_role("link", name="Audit").click()
        expect(page.get_by_role("table")).to_contain_text("license.assigned")
    finally:
        context.close()
