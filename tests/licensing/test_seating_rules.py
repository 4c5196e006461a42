"""The rules of SPEC section 1, each test named after the rule it checks (engine level, both databases)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from licensedesk.audit import service as audit
from licensedesk.billing import service as billing
from licensedesk.directory import service as directory
from licensedesk.errors import (
    AlreadyAssigned,
    GroupHasLicenses,
    LicenseInherited,
    NotAssigned,
    NotEnoughLicenses,
    NotFound,
    QuantityBelowAssigned,
    SubscriptionTerminal,
    ValidationFailed,
)
from licensedesk.licensing import service as licensing
from tests.world import PLAN, make_world


@pytest.fixture
def w(ctx):
    return make_world(ctx)


def counts(w):
    row = w.overview()
    return row.purchased, row.assigned, row.available, row.waiting


def test_assigning_the_same_plan_twice_to_the_same_target_is_a_noop(w, ctx):
    w.buy(3)
    u = w.user("ann")
    g = w.group("Sales", users=[w.user("bob")])
    licensing.assign(ctx, w.tenant, PLAN, users=[u], groups=[g])
    w.drain()
    before = licensing.user_licenses(ctx, w.tenant, u)[0].claimed_at
    again = licensing.assign(ctx, w.tenant, PLAN, users=[u], groups=[g])
    assert w.drain() == 0  # no new group job
    assert again.needed == 0
    assert licensing.user_licenses(ctx, w.tenant, u)[0].claimed_at == before
    assert counts(w) == (3, 2, 1, 0)
    assigned = audit.query(ctx, w.tenant, action="license.assigned").items
    assert len(assigned) == 2


def test_a_user_with_several_sources_consumes_one_seat(w, ctx):
    w.buy(2)
    u = w.user("ann")
    inner = w.group("Inner", users=[u])
    outer = w.group("Outer", users=[u], groups=[inner])
    licensing.assign(ctx, w.tenant, PLAN, users=[u], groups=[inner, outer])
    w.drain()
    assert counts(w) == (2, 1, 1, 0)
    [lic] = licensing.user_licenses(ctx, w.tenant, u)
    assert [s["type"] for s in lic.sources] == ["direct", "group", "group"]
    assert {s.get("groupName") for s in lic.sources} == {None, "Inner", "Outer"}


def test_claim_order_fills_active_then_warning_then_suspended_then_error(w, ctx):
    w.buy(2)
    w.buy(1, status="Warning")
    w.buy(1, status="Suspended")
    users = w.users("u", 6)
    for u in users:  # one by one: claim order is assignment order
        licensing.assign(ctx, w.tenant, PLAN, users=[u], allow_partial=True)
    assert w.states(users) == ["Active", "Active", "Warning", "Suspended", "Error", "Error"]
    row = w.overview()
    assert (row.purchased, row.assigned, row.available, row.waiting) == (3, 4, 0, 2)
    assert row.units == {"enabled": 2, "warning": 1, "suspended": 1}
    assert row.status == "Warning"


def test_a_freed_seat_goes_to_the_longest_waiting_user(w, ctx):
    w.buy(2)
    users = w.users("u", 4)
    for u in users:
        licensing.assign(ctx, w.tenant, PLAN, users=[u], allow_partial=True)
    assert w.states(users) == ["Active", "Active", "Error", "Error"]
    licensing.unassign(ctx, w.tenant, PLAN, users=[users[0]])
    assert w.states(users) == [None, "Active", "Active", "Error"]
    seated = audit.query(ctx, w.tenant, action="license.seated", target_id=users[2]).items
    assert len(seated) == 1 and seated[0].details == {"from": "Error", "to": "Active"}


def test_a_deactivated_user_is_disabled_and_frees_the_seat_for_the_longest_waiting(w, ctx):
    w.buy(1)
    a, b = w.users("u", 2)
    licensing.assign(ctx, w.tenant, PLAN, users=[a])
    licensing.assign(ctx, w.tenant, PLAN, users=[b], allow_partial=True)
    assert w.states([a, b]) == ["Active", "Error"]
    directory.update_user(ctx, w.tenant, a, active=False)
    assert w.states([a, b]) == ["Disabled", "Active"]
    assert counts(w) == (1, 1, 0, 0)
    # reactivated: the source stayed, but the seat is taken, so the user waits (claim from reactivation)
    directory.update_user(ctx, w.tenant, a, active=True)
    assert w.states([a, b]) == ["Error", "Active"]
    assert counts(w) == (1, 1, 0, 1)
    # and is seated again when a seat is free
    licensing.unassign(ctx, w.tenant, PLAN, users=[b])
    assert w.state(a) == "Active"


def test_needed_counts_users_reached_through_groups_once_and_ignores_seated_and_inactive(w, ctx):
    w.buy(10)
    seated, shared, inactive, fresh = w.users("u", 4)
    directory.update_user(ctx, w.tenant, inactive, active=False)
    licensing.assign(ctx, w.tenant, PLAN, users=[seated])
    g1 = w.group("One", users=[seated, shared, inactive])
    g2 = w.group("Two", users=[shared, fresh])
    dry = licensing.assign(ctx, w.tenant, PLAN, users=[shared], groups=[g1, g2], dry_run=True)
    assert (dry.needed, dry.available, dry.would_succeed) == (2, 9, True)


def test_dry_run_changes_nothing(w, ctx):
    w.buy(1)
    u = w.user("ann")
    g = w.group("G", users=[u])
    before = audit.query(ctx, w.tenant).items
    result = licensing.assign(ctx, w.tenant, PLAN, users=[u], groups=[g], dry_run=True)
    assert result.dry_run and result.needed == 1 and result.would_succeed
    assert w.state(u) is None
    assert licensing.group_licenses(ctx, w.tenant, g) == []
    assert audit.query(ctx, w.tenant).items == before
    assert w.drain() == 0


def test_not_enough_licenses_changes_nothing(w, ctx):
    w.buy(1)
    a, b = w.users("u", 2)
    before = audit.query(ctx, w.tenant).items
    with pytest.raises(NotEnoughLicenses) as exc:
        licensing.assign(ctx, w.tenant, PLAN, users=[a, b])
    assert exc.value.extra == {"needed": 2, "available": 1}
    assert w.states([a, b]) == [None, None]
    assert audit.query(ctx, w.tenant).items == before


def test_allow_partial_seats_what_fits_and_the_rest_wait_in_claim_order(w, ctx):
    w.buy(2)
    users = w.users("u", 3)
    result = licensing.assign(ctx, w.tenant, PLAN, users=users, allow_partial=True)
    assert (result.needed, result.available) == (3, 2)
    states = {u["userId"]: (u["state"], u["error"]) for u in result.users}
    assert sorted(states.values()) == [("Active", None), ("Active", None), ("Error", "CountViolation")]
    # same claim time: ties are broken by user id
    assert [states[u][0] for u in sorted(users)] == ["Active", "Active", "Error"]


def test_a_later_direct_assignment_never_takes_a_seat_a_queued_group_needs(w, ctx):
    w.buy(3)
    members = w.users("m", 3)
    g = w.group("G", users=members)
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    assert w.overview().available == 0  # reserved for the queued group
    late = w.user("late")
    with pytest.raises(NotEnoughLicenses):
        licensing.assign(ctx, w.tenant, PLAN, users=[late])
    result = licensing.assign(ctx, w.tenant, PLAN, users=[late], allow_partial=True)
    assert result.users[0]["state"] == "Error"  # and processing will not contradict it
    w.drain()
    assert w.states(members) == ["Active"] * 3
    assert w.state(late) == "Error"
    assert counts(w) == (3, 3, 0, 1)


def test_a_license_held_only_through_groups_cannot_be_removed_on_the_user(w, ctx):
    w.buy(5)
    u = w.user("ann")
    g = w.group("G", users=[u])
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    w.drain()
    with pytest.raises(LicenseInherited) as exc:
        licensing.unassign(ctx, w.tenant, PLAN, users=[u])
    assert exc.value.extra == {"groups": [{"id": g, "displayName": "G"}]}
    assert w.state(u) == "Active"


def test_unassigning_a_direct_assignment_keeps_the_license_when_a_group_source_remains(w, ctx):
    w.buy(5)
    u = w.user("ann")
    g = w.group("G", users=[u])
    licensing.assign(ctx, w.tenant, PLAN, users=[u], groups=[g])
    w.drain()
    licensing.unassign(ctx, w.tenant, PLAN, users=[u])
    [lic] = licensing.user_licenses(ctx, w.tenant, u)
    assert lic.state == "Active" and [s["type"] for s in lic.sources] == ["group"]


def test_removing_a_group_assignment_removes_the_source_from_all_transitive_members(w, ctx):
    w.buy(5)
    deep, direct_too = w.users("u", 2)
    inner = w.group("Inner", users=[deep, direct_too])
    outer = w.group("Outer", groups=[inner])
    licensing.assign(ctx, w.tenant, PLAN, users=[direct_too], groups=[outer])
    w.drain()
    assert w.states([deep, direct_too]) == ["Active", "Active"]
    result = licensing.unassign(ctx, w.tenant, PLAN, groups=[outer])
    assert result.groups == [{"groupId": outer, "processingState": "Queued"}]
    w.drain()
    assert w.states([deep, direct_too]) == [None, "Active"]
    assert counts(w) == (5, 1, 4, 0)


def test_unassigning_what_is_not_assigned_is_refused(w, ctx):
    w.buy(1)
    u = w.user("ann")
    g = w.group("G")
    with pytest.raises(NotAssigned):
        licensing.unassign(ctx, w.tenant, PLAN, users=[u])
    with pytest.raises(NotAssigned):
        licensing.unassign(ctx, w.tenant, PLAN, groups=[g])


def test_a_new_member_of_a_licensed_nested_group_gets_the_license_and_a_leaver_loses_it(w, ctx):
    w.buy(5)
    inner = w.group("Finance-EMEA")
    outer = w.group("Finance", groups=[inner])
    licensing.assign(ctx, w.tenant, PLAN, groups=[outer])
    w.drain()
    u = w.user("ann")
    directory.add_members(ctx, w.tenant, inner, users=[u])
    [status] = licensing.group_licenses(ctx, w.tenant, outer)
    assert status.processing_state == "Queued"
    w.drain()
    assert w.state(u) == "Active"
    [status] = licensing.group_licenses(ctx, w.tenant, outer)
    assert (status.processing_state, status.members_total, status.members_seated) == ("Complete", 1, 1)
    directory.remove_members(ctx, w.tenant, inner, users=[u])
    w.drain()
    assert w.state(u) is None
    [status] = licensing.group_licenses(ctx, w.tenant, outer)
    assert (status.members_total, status.members_seated) == (0, 0)


def test_nesting_and_unnesting_a_group_grants_and_removes_its_members_licenses(w, ctx):
    w.buy(5)
    members = w.users("m", 2)
    team = w.group("Team", users=members)
    dept = w.group("Dept")
    licensing.assign(ctx, w.tenant, PLAN, groups=[dept])
    w.drain()
    directory.add_members(ctx, w.tenant, dept, groups=[team])
    w.drain()
    assert w.states(members) == ["Active", "Active"]
    directory.remove_member(ctx, w.tenant, dept, team)
    w.drain()
    assert w.states(members) == [None, None]


def test_a_membership_that_would_make_a_cycle_is_refused(w, ctx):
    from licensedesk.errors import MembershipCycle

    a = w.group("A")
    b = w.group("B", groups=[a])
    c = w.group("C", groups=[b])
    for group, member in ((a, a), (a, b), (a, c), (b, c)):
        with pytest.raises(MembershipCycle):
            directory.add_members(ctx, w.tenant, group, groups=[member])
    members = directory.list_members(ctx, w.tenant, a, transitive=True).items
    assert members == []


def test_a_group_with_licenses_cannot_be_deleted(w, ctx):
    w.buy(1)
    g = w.group("G")
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    with pytest.raises(GroupHasLicenses):
        directory.delete_group(ctx, w.tenant, g)
    licensing.unassign(ctx, w.tenant, PLAN, groups=[g])
    directory.delete_group(ctx, w.tenant, g)
    with pytest.raises(NotFound):
        directory.get_group(ctx, w.tenant, g)


def test_deleting_a_nested_group_removes_the_licenses_it_carried(w, ctx):
    w.buy(5)
    u = w.user("ann")
    inner = w.group("Inner", users=[u])
    outer = w.group("Outer", groups=[inner])
    licensing.assign(ctx, w.tenant, PLAN, groups=[outer])
    w.drain()
    assert w.state(u) == "Active"
    directory.delete_group(ctx, w.tenant, inner)
    w.drain()
    assert w.state(u) is None
    [status] = licensing.group_licenses(ctx, w.tenant, outer)
    assert status.members_total == 0


def test_deleting_a_user_removes_their_assignments_and_frees_the_seat(w, ctx):
    w.buy(1)
    a, b = w.users("u", 2)
    g = w.group("G", users=[a])
    licensing.assign(ctx, w.tenant, PLAN, users=[a], groups=[g])
    licensing.assign(ctx, w.tenant, PLAN, users=[b], allow_partial=True)
    w.drain()
    assert w.states([a, b]) == ["Active", "Error"]
    directory.delete_user(ctx, w.tenant, a)
    assert w.state(b) == "Active"
    assert counts(w) == (1, 1, 0, 0)
    [status] = licensing.group_licenses(ctx, w.tenant, g)
    assert (status.members_total, status.members_seated) == (0, 0)


def test_reassign_moves_the_seat_and_the_place_in_claim_order(w, ctx):
    w.buy(1)
    holder, waiting, newcomer = w.users("u", 3)
    licensing.assign(ctx, w.tenant, PLAN, users=[holder])
    licensing.assign(ctx, w.tenant, PLAN, users=[waiting], allow_partial=True)
    before = licensing.user_licenses(ctx, w.tenant, holder)[0].claimed_at
    result = licensing.reassign(ctx, w.tenant, PLAN, "u000@contoso.com", newcomer)
    assert result.to_user["state"] == "Active" and result.from_user["state"] is None
    assert licensing.user_licenses(ctx, w.tenant, newcomer)[0].claimed_at == before
    assert w.state(waiting) == "Error"  # the newcomer took the holder's place, ahead of the waiting user


def test_reassign_refusals(w, ctx):
    w.buy(5)
    a, b, c = w.users("u", 3)
    g = w.group("G", users=[c])
    licensing.assign(ctx, w.tenant, PLAN, users=[a, b], groups=[g])
    w.drain()
    with pytest.raises(AlreadyAssigned):
        licensing.reassign(ctx, w.tenant, PLAN, a, b)
    with pytest.raises(LicenseInherited):
        licensing.reassign(ctx, w.tenant, PLAN, c, w.user("d"))
    with pytest.raises(NotAssigned):
        licensing.reassign(ctx, w.tenant, PLAN, w.user("e"), a)
    with pytest.raises(ValidationFailed):
        licensing.reassign(ctx, w.tenant, PLAN, a, a)


def test_quantity_below_assigned_is_refused_unless_forced(w, ctx):
    sub = w.buy(3)
    users = w.users("u", 3)
    for u in users:
        licensing.assign(ctx, w.tenant, PLAN, users=[u])
    with pytest.raises(QuantityBelowAssigned) as exc:
        billing.update_subscription(ctx, w.tenant, sub, quantity=1)
    assert exc.value.extra == {"seats": 1, "assigned": 3}
    assert w.states(users) == ["Active"] * 3
    billing.update_subscription(ctx, w.tenant, sub, quantity=1, force=True)
    # the most recently licensed lose their seats first, each with an audit event
    assert w.states(users) == ["Active", "Error", "Error"]
    lost = audit.query(ctx, w.tenant, action="license.seat_lost").items
    assert sorted(e.target["id"] for e in lost) == sorted(users[1:])
    assert counts(w) == (1, 1, 0, 2)
    billing.update_subscription(ctx, w.tenant, sub, quantity=2)
    assert w.states(users) == ["Active", "Active", "Error"]


def test_suspending_a_subscription_keeps_assignments_and_reinstating_restores_them(w, ctx):
    sub = w.buy(2)
    users = w.users("u", 2)
    licensing.assign(ctx, w.tenant, PLAN, users=users)
    billing.update_subscription(ctx, w.tenant, sub, status="Suspended")
    assert w.states(users) == ["Suspended", "Suspended"]
    assert counts(w) == (0, 2, 0, 0)
    billing.update_subscription(ctx, w.tenant, sub, status="Active")
    assert w.states(users) == ["Active", "Active"]


def test_expired_and_cancelled_subscriptions_are_terminal(w, ctx):
    sub = w.buy(1)
    u = w.user("ann")
    licensing.assign(ctx, w.tenant, PLAN, users=[u])
    with pytest.raises(QuantityBelowAssigned):
        billing.update_subscription(ctx, w.tenant, sub, status="Cancelled")
    billing.update_subscription(ctx, w.tenant, sub, status="Cancelled", force=True)
    assert w.state(u) == "Error"
    with pytest.raises(SubscriptionTerminal):
        billing.update_subscription(ctx, w.tenant, sub, status="Active")
    with pytest.raises(SubscriptionTerminal):
        billing.update_subscription(ctx, w.tenant, sub, quantity=5)


def test_group_status_follows_seat_changes_made_elsewhere(w, ctx):
    sub = w.buy(2)
    members = w.users("m", 2)
    g = w.group("G", users=members)
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    w.drain()
    billing.update_subscription(ctx, w.tenant, sub, quantity=1, force=True)
    [status] = licensing.group_licenses(ctx, w.tenant, g)
    assert (status.members_total, status.members_seated, status.members_with_errors) == (2, 1, 1)


def test_licensed_users_filters_by_state_and_source(w, ctx):
    w.buy(2)
    a, b, c = w.users("u", 3)
    g = w.group("G", users=[c])
    licensing.assign(ctx, w.tenant, PLAN, users=[a, b])
    licensing.assign(ctx, w.tenant, PLAN, groups=[g], allow_partial=True)
    w.drain()
    everyone = licensing.licensed_users(ctx, w.tenant, PLAN).items
    assert [x.user["id"] for x in everyone] == [a, b, c] or {x.user["id"] for x in everyone} == {a, b, c}
    assert [x.user["id"] for x in licensing.licensed_users(ctx, w.tenant, PLAN, state="Error").items] == [c]
    assert [x.user["id"] for x in licensing.licensed_users(ctx, w.tenant, PLAN, source="group").items] == [c]
    direct = licensing.licensed_users(ctx, w.tenant, PLAN, source="direct").items
    assert {x.user["id"] for x in direct} == {a, b}
    first = licensing.licensed_users(ctx, w.tenant, PLAN, limit=2)
    rest = licensing.licensed_users(ctx, w.tenant, PLAN, limit=2, cursor=first.next_cursor)
    assert [x.user["id"] for x in first.items + rest.items] == [x.user["id"] for x in everyone]
    assert rest.next_cursor is None
    [waiting] = licensing.licensed_users(ctx, w.tenant, PLAN, state="Error").items
    assert waiting.sources == [{"type": "group", "groupId": g, "groupName": "G"}]
    assert waiting.error == "CountViolation"
    idle = licensing.licensed_users(ctx, w.tenant, PLAN, idle_days=30).items
    assert len(idle) == 3  # nobody has used the product yet


def test_subscription_lifecycle_term_end_warning_suspended_expired(w, ctx, clock):
    now = clock.now()
    w.buy(1, term_ends_at=now + timedelta(days=10))
    u = w.user("ann")
    licensing.assign(ctx, w.tenant, PLAN, users=[u])
    assert billing.advance_lifecycle(ctx) == 0
    clock.advance(days=10)
    billing.advance_lifecycle(ctx)
    assert w.state(u) == "Warning"
    clock.advance(days=30)
    billing.advance_lifecycle(ctx)
    assert w.state(u) == "Suspended"
    clock.advance(days=60)
    billing.advance_lifecycle(ctx)
    assert w.state(u) == "Error"
    actions = [e.action for e in audit.query(ctx, w.tenant, action="subscription.*").items]
    assert actions[:3] == ["subscription.expired", "subscription.suspended", "subscription.term_ended"]


def test_time_travel_past_several_stages_applies_each_in_turn(w, ctx, clock):
    w.buy(1, term_ends_at=clock.now() + timedelta(days=1))
    clock.advance(days=365)
    assert billing.advance_lifecycle(ctx) == 3
    [sub] = billing.list_subscriptions(ctx, w.tenant).items
    assert sub.status == "Expired"


def test_auto_renew_extends_the_term(w, ctx, clock):
    start = clock.now()
    sub_id = w.buy(1, term_ends_at=start + timedelta(days=30), auto_renew=True)
    clock.advance(days=75)
    billing.advance_lifecycle(ctx)
    sub = billing.get_subscription(ctx, w.tenant, sub_id)
    assert sub.status == "Active"
    assert sub.term_ends_at > clock.now()
    assert (sub.term_ends_at - start).days in (89, 90)


def test_trial_converts_with_auto_renew_and_expires_without(w, ctx, clock):
    converting = w.buy(1, trial=True, auto_renew=True)
    expiring = w.buy(1, trial=True)
    clock.advance(days=31)
    billing.advance_lifecycle(ctx)
    a = billing.get_subscription(ctx, w.tenant, converting)
    b = billing.get_subscription(ctx, w.tenant, expiring)
    assert (a.status, a.trial) == ("Active", False)
    assert b.status == "Expired"


def test_plan_grace_days_override_the_default(ctx, clock):
    from licensedesk.catalog import service as catalog

    w = make_world(ctx)
    catalog.create_plan(
        ctx, "innofalls-charts", "short-grace", "Short", "innofalls.charts.short", grace_days=2
    )
    w.buy(1, plan="short-grace", term_ends_at=clock.now() + timedelta(days=1))
    clock.advance(days=2)
    billing.advance_lifecycle(ctx)
    [sub] = billing.list_subscriptions(ctx, w.tenant, plan_id="short-grace").items
    assert sub.status == "Warning"
    clock.advance(days=2)
    billing.advance_lifecycle(ctx)
    [sub] = billing.list_subscriptions(ctx, w.tenant, plan_id="short-grace").items
    assert sub.status == "Suspended"
