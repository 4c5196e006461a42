"""The demo visual flips from "license required" to the chart after an admin assigns a license."""

from __future__ import annotations

from tests.e2e.conftest import screenshot

PLAN = "innofalls-charts-pro"
USER = "chiara.conti@contoso.com"


def test_the_demo_visual_flips_from_the_overlay_to_the_chart_after_an_assignment(demo_server, page):
    page.goto(f"{demo_server.base}/demo/visual?user={USER}")
    overlay = page.locator("#overlay")
    overlay.wait_for(state="visible", timeout=10_000)
    assert "License required" in overlay.inner_text()
    assert "Innofalls Charts" in overlay.inner_text()
    assert page.locator("#chart").is_hidden()
    screenshot(page, "demo-visual-unlicensed")

    with demo_server.api() as api:
        r = api.post(
            f"/v1/tenants/contoso/licenses/{PLAN}/assign", json={"users": [USER], "allowPartial": True}
        )
        assert r.status_code == 200, r.text
        assert r.json()["users"][0]["state"] == "Active", r.text
        try:
            # the visual checks again when the page regains focus
            checks = int(page.evaluate("document.body.dataset.checks"))
            page.evaluate("window.dispatchEvent(new Event('focus'))")
            page.wait_for_function(f"Number(document.body.dataset.checks) > {checks}", timeout=10_000)
            page.locator("#chart").wait_for(state="visible", timeout=10_000)
            assert page.locator("#overlay").is_hidden()
            assert page.locator("#bars rect").count() == 4
            assert page.locator("#status").inner_text() == "licensed"
            screenshot(page, "demo-visual-licensed")
        finally:
            api.post(f"/v1/tenants/contoso/licenses/{PLAN}/unassign", json={"users": [USER]})


def test_an_unknown_user_sees_the_overlay(demo_server, page):
    page.goto(f"{demo_server.base}/demo/visual?user=nobody@contoso.com")
    page.locator("#overlay").wait_for(state="visible", timeout=10_000)
    assert page.locator("#status").inner_text() == "license required"
