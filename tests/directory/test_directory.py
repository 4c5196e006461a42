"""Users, groups, memberships and search (both databases)."""

from __future__ import annotations

import pytest

from licensedesk.audit import service as audit
from licensedesk.directory import service as directory
from licensedesk.errors import Duplicate, NotFound, ValidationFailed
from licensedesk.pagination import InvalidCursor
from tests.world import make_world


@pytest.fixture
def w(ctx):
    return make_world(ctx)


def test_user_principal_name_is_unique_per_tenant_ignoring_case(w, ctx):
    directory.create_user(ctx, w.tenant, "Ann.Lee@Contoso.com", "Ann Lee")
    with pytest.raises(Duplicate):
        directory.create_user(ctx, w.tenant, "ann.lee@contoso.com", "Other")
    # another tenant may have the same name
    other = make_world(ctx, "fabrikam")
    directory.create_user(ctx, other.tenant, "ann.lee@contoso.com", "Ann")


def test_external_id_is_unique_per_tenant_when_set(w, ctx):
    directory.create_user(ctx, w.tenant, "a@contoso.com", external_id="oid-1")
    directory.create_user(ctx, w.tenant, "b@contoso.com")
    directory.create_user(ctx, w.tenant, "c@contoso.com")  # several without one are fine
    with pytest.raises(Duplicate):
        directory.create_user(ctx, w.tenant, "d@contoso.com", external_id="oid-1")
    b = directory.get_user(ctx, w.tenant, "b@contoso.com")
    with pytest.raises(Duplicate):
        directory.update_user(ctx, w.tenant, b.id, external_id="oid-1")


def test_a_user_is_addressed_by_id_or_by_user_principal_name(w, ctx):
    u = directory.create_user(ctx, w.tenant, "Ann@Contoso.com", "Ann")
    assert directory.get_user(ctx, w.tenant, u.id) == u
    assert directory.get_user(ctx, w.tenant, "ann@contoso.COM") == u
    with pytest.raises(NotFound):
        directory.get_user(ctx, w.tenant, "nobody@contoso.com")


@pytest.mark.parametrize(
    ("upn", "name"),
    [
        ("not-an-email", "x"),
        ("a@b@c", "x"),
        ("a b@contoso.com", "x"),
        ("nul\x00@contoso.com", "x"),
        ("ok@contoso.com", "bad\x00name"),
        ("ok@contoso.com", "x" * 10_000),
        ("", "x"),
    ],
)
def test_invalid_user_values_are_refused_and_change_nothing(w, ctx, upn, name):
    before = audit.query(ctx, w.tenant).items
    with pytest.raises(ValidationFailed):
        directory.create_user(ctx, w.tenant, upn, name)
    assert directory.list_users(ctx, w.tenant).items == []
    assert audit.query(ctx, w.tenant).items == before


def test_unicode_names_are_kept_and_searchable(w, ctx):
    u = directory.create_user(ctx, w.tenant, "zoe@contoso.com", "Zoë \u200fعلي Ångström")
    assert directory.get_user(ctx, w.tenant, u.id).display_name == "Zoë \u200fعلي Ångström"
    assert [x.id for x in directory.list_users(ctx, w.tenant, search="ång").items] == [u.id]
    assert [x.id for x in directory.list_users(ctx, w.tenant, search="ZOË").items] == [u.id]


def test_user_search_matches_prefixes_of_the_upn_and_of_any_word_of_the_name(w, ctx):
    ann = directory.create_user(ctx, w.tenant, "ann.lee@contoso.com", "Ann Lee")
    bob = directory.create_user(ctx, w.tenant, "bob@contoso.com", "Robert Annan")
    directory.create_user(ctx, w.tenant, "carl@contoso.com", "Carl Jung")
    found = [u.id for u in directory.list_users(ctx, w.tenant, search="ann").items]
    assert sorted(found) == sorted([ann.id, bob.id])
    assert [u.id for u in directory.list_users(ctx, w.tenant, search="lee").items] == [ann.id]
    assert [u.id for u in directory.list_users(ctx, w.tenant, search="ann.l").items] == [ann.id]
    assert directory.list_users(ctx, w.tenant, search="xyz").items == []
    # a user who matches through several terms appears once
    assert found.count(ann.id) == 1


def test_search_results_page_without_duplicates_or_gaps(w, ctx):
    ids = {
        directory.create_user(ctx, w.tenant, f"sam{i:02d}@contoso.com", f"Sam Samson {i}").id
        for i in range(25)
    }
    seen: list[str] = []
    cursor = None
    while True:
        page = directory.list_users(ctx, w.tenant, search="sam", cursor=cursor, limit=7)
        seen += [u.id for u in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == ids


def test_listing_users_pages_in_name_order_while_others_are_inserted(w, ctx):
    for i in range(10):
        directory.create_user(ctx, w.tenant, f"u{i:02d}@contoso.com")
    page = directory.list_users(ctx, w.tenant, limit=4)
    seen = [u.user_principal_name for u in page.items]
    directory.create_user(ctx, w.tenant, "u00a@contoso.com")  # before the cursor: not seen, no shift
    directory.create_user(ctx, w.tenant, "u99@contoso.com")  # after it: seen
    cursor = page.next_cursor
    while cursor:
        page = directory.list_users(ctx, w.tenant, limit=4, cursor=cursor)
        seen += [u.user_principal_name for u in page.items]
        cursor = page.next_cursor
    assert seen == [f"u{i:02d}@contoso.com" for i in range(10)] + ["u99@contoso.com"]


def test_a_bad_cursor_is_refused(w, ctx):
    with pytest.raises(InvalidCursor):
        directory.list_users(ctx, w.tenant, cursor="not-a-cursor!")
    with pytest.raises(ValidationFailed):
        directory.list_users(ctx, w.tenant, limit=0)
    with pytest.raises(ValidationFailed):
        directory.list_users(ctx, w.tenant, limit=1001)


def test_directory_search_ranks_users_and_groups_together_closest_first(w, ctx):
    fin = directory.create_group(ctx, w.tenant, "Finance")
    emea = directory.create_group(ctx, w.tenant, "Finance-EMEA")
    finn = directory.create_user(ctx, w.tenant, "finn@contoso.com", "Finn Wolfhard")
    directory.create_user(ctx, w.tenant, "zed@contoso.com", "Zed")
    hits = directory.search(ctx, w.tenant, "fin").items
    assert [(h.type, h.id) for h in hits] == [("group", fin.id), ("group", emea.id), ("user", finn.id)]
    only_users = directory.search(ctx, w.tenant, "fin", types=["user"]).items
    assert [h.id for h in only_users] == [finn.id]
    assert [h.id for h in directory.search(ctx, w.tenant, "emea").items] == [emea.id]
    with pytest.raises(ValidationFailed):
        directory.search(ctx, w.tenant, "fin", types=["device"])


def test_groups_list_members_directly_and_transitively(w, ctx):
    a, b = w.users("u", 2)
    inner = w.group("Inner", users=[a])
    outer = w.group("Outer", users=[b], groups=[inner])
    direct = directory.list_members(ctx, w.tenant, outer).items
    assert [(m.type, m.id) for m in direct] == [("group", inner), ("user", b)]
    everyone = directory.list_members(ctx, w.tenant, outer, transitive=True).items
    assert {(m.type, m.id) for m in everyone} == {("group", inner), ("user", a), ("user", b)}
    assert [g.display_name for g in directory.user_groups(ctx, w.tenant, a, transitive=True)] == [
        "Inner",
        "Outer",
    ]
    assert [g.display_name for g in directory.user_groups(ctx, w.tenant, a)] == ["Inner"]


def test_adding_an_existing_member_is_a_noop_and_removing_a_non_member_is_not_found(w, ctx):
    a = w.user("ann")
    g = w.group("G", users=[a])
    change = directory.add_members(ctx, w.tenant, g, users=[a])
    assert change.added_users == []
    with pytest.raises(NotFound):
        directory.remove_members(ctx, w.tenant, g, users=[w.user("bob")])
    with pytest.raises(NotFound):
        directory.add_members(ctx, w.tenant, g, users=["nobody@contoso.com"])


def test_removing_all_members_empties_the_group(w, ctx):
    a, b = w.users("u", 2)
    inner = w.group("Inner")
    g = w.group("G", users=[a, b], groups=[inner])
    directory.remove_all_members(ctx, w.tenant, g)
    assert directory.list_members(ctx, w.tenant, g).items == []


def test_deep_nesting_is_handled_without_recursion_limits(w, ctx):
    u = w.user("deep")
    child = w.group("level-0", users=[u])
    top = child
    for i in range(1, 120):
        top = w.group(f"level-{i}", groups=[child])
        child = top
    everyone = directory.list_members(ctx, w.tenant, top, transitive=True, limit=1000).items
    assert ("user", u) in {(m.type, m.id) for m in everyone}
    assert len(directory.user_groups(ctx, w.tenant, u, transitive=True)) == 120


def test_tenants_never_see_each_other(w, ctx):
    other = make_world(ctx, "fabrikam")
    u = w.user("ann")
    g = w.group("G")
    with pytest.raises(NotFound):
        directory.get_user(ctx, other.tenant, u)
    with pytest.raises(NotFound):
        directory.get_group(ctx, other.tenant, g)
    with pytest.raises(NotFound):
        directory.add_members(ctx, other.tenant, other.group("H"), users=[u])
    assert directory.search(ctx, other.tenant, "ann").items == []


def test_directory_changes_are_audited(w, ctx):
    a = w.user("ann")
    g = w.group("G", users=[a])
    directory.update_user(ctx, w.tenant, a, display_name="Ann Lee")
    directory.update_user(ctx, w.tenant, a, active=False)
    actions = [e.action for e in audit.query(ctx, w.tenant).items]
    assert actions[:5] == [
        "user.deactivated",
        "user.updated",
        "group.member_added",
        "group.created",
        "user.created",
    ]
    member_events = audit.query(ctx, w.tenant, target_id=g, action="group.member_added").items
    assert member_events[0].details["memberId"] == a
