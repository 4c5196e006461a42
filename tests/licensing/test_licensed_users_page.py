"""A plan's licensed users, page by page: read a state at a time and merged (so that a page never sorts all of
the plan's licenses), they still come in claim order (claim time, then user id), every holder once, across
states and across pages, with and without filters."""

from __future__ import annotations

from licensedesk.directory import service as directory
from licensedesk.licensing import service as licensing
from tests.world import PLAN, make_world


def _all_pages(ctx, tenant: str, limit: int, **filters) -> list:  # type: ignore[no-untyped-def]
    out, cursor = [], None
    while True:
        page = licensing.licensed_users(ctx, tenant, PLAN, cursor=cursor, limit=limit, **filters)
        assert len(page.items) <= limit
        out += page.items
        cursor = page.next_cursor
        if cursor is None:
            return out


def test_pages_across_states_come_in_claim_order_with_every_holder_once(ctx):
    w = make_world(ctx)
    w.buy(3)
    first = w.users("early", 4)
    licensing.assign(ctx, w.tenant, PLAN, users=first, allow_partial=True)  # 3 Active, 1 Error
    ctx.clock.advance(seconds=5)
    later = w.users("late", 5)
    licensing.assign(ctx, w.tenant, PLAN, users=later, allow_partial=True)  # all Error: the pool is full
    ctx.clock.advance(seconds=5)
    team = w.users("team", 4)
    licensing.assign(ctx, w.tenant, PLAN, groups=[w.group("Team", users=team)], allow_partial=True)
    w.drain()
    # a disabled holder keeps its place in claim order, in state Disabled, between the others
    directory.update_user(ctx, w.tenant, later[2], active=False)
    w.drain()

    every = _all_pages(ctx, w.tenant, limit=1000)
    assert {lu.state for lu in every} == {"Active", "Error", "Disabled"}
    assert sorted(lu.user["id"] for lu in every) == sorted(first + later + team)
    expected = sorted(every, key=lambda lu: (lu.claimed_at, lu.user["id"]))
    assert [lu.user["id"] for lu in every] == [lu.user["id"] for lu in expected]
    for limit in (1, 2, 3, 5):
        paged = _all_pages(ctx, w.tenant, limit=limit)
        assert [lu.user["id"] for lu in paged] == [lu.user["id"] for lu in expected], limit
    # filters keep the order, page after page
    errors = _all_pages(ctx, w.tenant, limit=2, state="Error")
    assert [lu.user["id"] for lu in errors] == [lu.user["id"] for lu in expected if lu.state == "Error"]
    via_group = _all_pages(ctx, w.tenant, limit=2, source="group")
    assert [lu.user["id"] for lu in via_group] == [u for u in (x.user["id"] for x in expected) if u in team]
    assert [lu.user["id"] for lu in _all_pages(ctx, w.tenant, limit=3, source="direct")] == [
        lu.user["id"] for lu in expected if lu.user["id"] not in team
    ]
