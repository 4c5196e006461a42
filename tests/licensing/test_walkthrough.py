"""The vendor help page's walk-through, end to end on the engine."""

from __future__ import annotations

import pytest

from licensedesk.errors import LicenseInherited, NotEnoughLicenses
from licensedesk.licensing import service as licensing
from tests.world import PLAN, make_world


def test_help_page_walkthrough(ctx):
    w = make_world(ctx)
    w.buy(5)
    emea = w.users("emea", 2)
    finance_only = w.users("fin", 4)
    finance_emea = w.group("Finance-EMEA", users=emea)
    finance = w.group("Finance", users=finance_only, groups=[finance_emea])

    # assigning the 6-member nested group is refused, naming needed and available; nothing changes
    with pytest.raises(NotEnoughLicenses) as refused:
        licensing.assign(ctx, w.tenant, PLAN, groups=[finance])
    assert refused.value.extra == {"needed": 6, "available": 5}
    assert w.drain() == 0
    row = w.overview()
    assert (row.purchased, row.assigned, row.available, row.waiting) == (5, 0, 5, 0)

    # dryRun says the same, and changes nothing either
    dry = licensing.assign(ctx, w.tenant, PLAN, groups=[finance], dry_run=True)
    assert (dry.needed, dry.available, dry.would_succeed) == (6, 5, False)
    assert licensing.group_licenses(ctx, w.tenant, finance) == []

    # allowPartial seats 5 and leaves 1 waiting
    result = licensing.assign(ctx, w.tenant, PLAN, groups=[finance], allow_partial=True)
    assert result.groups == [{"groupId": finance, "processingState": "Queued"}]
    assert w.overview().available == 0  # the queued group's seats are already promised
    w.drain()
    row = w.overview()
    assert (row.purchased, row.assigned, row.available, row.waiting) == (5, 5, 0, 1)
    [status] = licensing.group_licenses(ctx, w.tenant, finance)
    assert (
        status.processing_state,
        status.members_total,
        status.members_seated,
        status.members_with_errors,
    ) == (
        "Complete",
        6,
        5,
        1,
    )
    members = emea + finance_only
    waiting = [u for u in members if w.state(u) == "Error"]
    assert len(waiting) == 1

    # a seated member leaving the group seats the waiting one, with no further action
    from licensedesk.directory import service as directory

    leaver = next(u for u in finance_only if w.state(u) == "Active")
    directory.remove_members(ctx, w.tenant, finance, users=[leaver])
    w.drain()
    assert w.state(leaver) is None
    assert w.state(waiting[0]) == "Active"
    row = w.overview()
    assert (row.assigned, row.available, row.waiting) == (5, 0, 0)

    # a license held only through a group cannot be removed on the user
    with pytest.raises(LicenseInherited) as inherited:
        licensing.unassign(ctx, w.tenant, PLAN, users=[emea[0]])
    assert inherited.value.extra["groups"] == [{"id": finance, "displayName": "Finance"}]

    # reassign moves a seat while the pool is full
    licensing.unassign(ctx, w.tenant, PLAN, groups=[finance])
    w.drain()
    assert w.overview().assigned == 0
    first = w.users("direct", 5)
    licensing.assign(ctx, w.tenant, PLAN, users=first)
    assert w.overview().available == 0
    newcomer = w.user("newcomer")
    moved = licensing.reassign(ctx, w.tenant, PLAN, first[0], newcomer)
    assert moved.to_user["state"] == "Active"
    assert w.state(first[0]) is None
    assert w.overview().assigned == 5
