"""The directory: users, groups (nested at any depth, never in a cycle), memberships and search.

Every change that can move licenses tells licensing in the same transaction: deactivating a user frees
their seat at once; membership changes queue the group processing that grants or removes licenses.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from licensedesk import fields
from licensedesk.audit import service as audit
from licensedesk.context import Context
from licensedesk.directory import repository as repo
from licensedesk.errors import Duplicate, MembershipCycle, NotFound, ValidationFailed
from licensedesk.pagination import Page, check_limit, decode_cursor, encode_cursor
from licensedesk.tenancy import repository as tenancy_repo
from licensedesk.tenancy import service as tenancy

UNSET: Any = object()


@dataclass
class User:
    id: str
    user_principal_name: str
    display_name: str
    external_id: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


@dataclass
class Group:
    id: str
    display_name: str
    description: str
    external_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass
class Member:
    type: str  # user | group
    id: str
    display_name: str
    user_principal_name: str | None = None


def _user(row: Any) -> User:
    return User(
        row.id,
        row.user_principal_name,
        row.display_name,
        row.external_id,
        bool(row.active),
        row.created_at,
        row.updated_at,
    )


def _group(row: Any) -> Group:
    return Group(row.id, row.display_name, row.description, row.external_id, row.created_at, row.updated_at)


# ---------------------------------------------------------------- in-transaction lookups (other features)


def resolve_user(conn: Connection, tenant_id: str, ref: str) -> Any:
    row = repo.user_by_ref(conn, tenant_id, ref) if isinstance(ref, str) else None
    if row is None:
        raise NotFound("user", ref)
    return row


def resolve_users(conn: Connection, tenant_id: str, refs: Sequence[str]) -> list[Any]:
    """Users by id or userPrincipalName, in the order given; a 404 names the first unknown one."""
    for ref in refs:
        if not isinstance(ref, str) or not ref:
            raise ValidationFailed("users are named by id or userPrincipalName", field="users")
    found = repo.users_by_refs(conn, tenant_id, list(refs))
    for ref in refs:
        if ref not in found:
            raise NotFound("user", ref)
    return [found[r] for r in refs]


def resolve_group(conn: Connection, tenant_id: str, group_id: str) -> Any:
    row = repo.group(conn, tenant_id, group_id) if isinstance(group_id, str) else None
    if row is None:
        raise NotFound("group", group_id)
    return row


def resolve_groups(conn: Connection, tenant_id: str, group_ids: Sequence[str]) -> list[Any]:
    for ref in group_ids:
        if not isinstance(ref, str) or not ref:
            raise ValidationFailed("groups are named by id", field="groups")
    found = repo.groups_by_ids(conn, tenant_id, list(dict.fromkeys(group_ids)))
    for ref in group_ids:
        if ref not in found:
            raise NotFound("group", ref)
    return [found[g] for g in group_ids]


def transitive_user_ids_select(tenant_id: str, group_id: str) -> Any:
    return repo.transitive_user_ids_select(tenant_id, group_id)


def ancestor_ids(conn: Connection, tenant_id: str, group_id: str) -> list[str]:
    return repo.ancestor_ids(conn, tenant_id, group_id)


def parent_ids(conn: Connection, tenant_id: str, group_id: str) -> list[str]:
    return repo.parent_ids(conn, tenant_id, group_id)


def user_group_ids(conn: Connection, tenant_id: str, user_id: str, *, transitive: bool) -> list[str]:
    return repo.user_group_ids(conn, tenant_id, user_id, transitive=transitive)


# ---------------------------------------------------------------- users


def _user_values(upn: str, display_name: str, external_id: str | None) -> dict[str, Any]:
    upn = fields.user_principal_name(upn)
    return {
        "user_principal_name": upn,
        "upn_key": upn.lower(),
        "display_name": fields.text(display_name or "", "displayName", max_length=256, required=False),
        "external_id": fields.optional_text(external_id, "externalId", max_length=200),
    }


def _check_unique_user(conn: Connection, t: str, values: dict[str, Any], user_id: str | None) -> None:
    if "upn_key" in values:
        other = repo.user_by_upn(conn, t, values["upn_key"])
        if other is not None and other.id != user_id:
            raise Duplicate("user", "userPrincipalName", values["user_principal_name"])
    if values.get("external_id"):
        other = repo.user_by_external_id(conn, t, values["external_id"])
        if other is not None and other.id != user_id:
            raise Duplicate("user", "externalId", values["external_id"])


def create_user(
    ctx: Context,
    tenant_ref: str,
    user_principal_name: str,
    display_name: str = "",
    *,
    external_id: str | None = None,
    active: bool = True,
) -> User:
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        return _user(
            create_user_in(
                conn, ctx, t, user_principal_name, display_name, external_id=external_id, active=active
            )
        )


def create_user_in(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    user_principal_name: str,
    display_name: str = "",
    *,
    external_id: str | None = None,
    active: bool = True,
) -> Any:
    if not isinstance(active, bool):
        raise ValidationFailed("active must be true or false", field="active")
    values = _user_values(user_principal_name, display_name, external_id)
    now = ctx.clock.now()
    user_id = str(uuid.uuid4())
    # the unique indexes refuse a duplicate; only then is it looked up, to say which value is taken
    row = repo.insert_user(
        conn,
        tenant_id=tenant_id,
        id=user_id,
        active=active,
        # the floor of claims only moves on a reactivation (a new user has no older source anyway)
        activated_at=repo.EPOCH,
        created_at=now,
        updated_at=now,
        **values,
    )
    if row is None:
        _check_unique_user(conn, tenant_id, values, None)
        raise Duplicate("user", "userPrincipalName or externalId", user_principal_name)
    # a new user has no terms to replace (a DELETE that finds nothing still costs an index probe)
    repo.insert_terms(
        conn,
        [
            {"tenant_id": tenant_id, "term": term, "rank": rank, "kind": "user", "object_id": user_id}
            for term, rank in sorted(
                repo.search_terms(values["user_principal_name"], values["display_name"]).items()
            )
        ],
    )
    audit.record(
        conn,
        ctx,
        tenant_id,
        "user.created",
        audit.Target("user", user_id, values["user_principal_name"]),
        details={
            "displayName": values["display_name"],
            "externalId": values["external_id"],
            "active": active,
        },
        at=now,
    )
    return row


def update_user(
    ctx: Context,
    tenant_ref: str,
    user_ref: str,
    *,
    user_principal_name: str = UNSET,
    display_name: str = UNSET,
    external_id: str | None = UNSET,
    active: bool = UNSET,
) -> User:
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        user = resolve_user(conn, t, user_ref)
        return _user(
            update_user_in(
                conn,
                ctx,
                t,
                user,
                user_principal_name=user_principal_name,
                display_name=display_name,
                external_id=external_id,
                active=active,
            )
        )


def update_user_in(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    user: Any,
    *,
    user_principal_name: str = UNSET,
    display_name: str = UNSET,
    external_id: str | None = UNSET,
    active: bool = UNSET,
) -> Any:
    values: dict[str, Any] = {}
    if user_principal_name is not UNSET:
        upn = fields.user_principal_name(user_principal_name)
        values.update(user_principal_name=upn, upn_key=upn.lower())
    if display_name is not UNSET:
        values["display_name"] = fields.text(
            display_name or "", "displayName", max_length=256, required=False
        )
    if external_id is not UNSET:
        values["external_id"] = fields.optional_text(external_id, "externalId", max_length=200)
    if active is not UNSET:
        if not isinstance(active, bool):
            raise ValidationFailed("active must be true or false", field="active")
        values["active"] = active
    changed = {k: v for k, v in values.items() if getattr(user, k) != v}
    if not changed:
        return user
    _check_unique_user(conn, tenant_id, changed, user.id)
    now = ctx.clock.now()
    extra = {"activated_at": now} if changed.get("active") is True else {}
    try:
        with conn.begin_nested():
            repo.update_user(conn, tenant_id, user.id, updated_at=now, **extra, **changed)
    except IntegrityError as exc:
        raise Duplicate("user", "userPrincipalName or externalId", user.user_principal_name) from exc
    if "upn_key" in changed or "display_name" in changed:
        repo.replace_terms(
            conn,
            tenant_id,
            "user",
            user.id,
            repo.search_terms(
                changed.get("user_principal_name", user.user_principal_name),
                changed.get("display_name", user.display_name),
            ),
        )
    name = changed.get("user_principal_name", user.user_principal_name)
    target = audit.Target("user", user.id, name)
    details = {k: v for k, v in changed.items() if k not in ("upn_key", "active")}
    if details:
        audit.record(conn, ctx, tenant_id, "user.updated", target, details=_camel(details), at=now)
    if "active" in changed:
        audit.record(
            conn,
            ctx,
            tenant_id,
            "user.activated" if changed["active"] else "user.deactivated",
            target,
            at=now,
        )
        from licensedesk.licensing import service as licensing

        licensing.users_activity_changed(conn, ctx, tenant_id, [user.id])
    return repo.user(conn, tenant_id, user.id)


def _camel(values: dict[str, Any]) -> dict[str, Any]:
    names = {
        "user_principal_name": "userPrincipalName",
        "display_name": "displayName",
        "external_id": "externalId",
        "description": "description",
    }
    return {names.get(k, k): v for k, v in values.items()}


def delete_user(ctx: Context, tenant_ref: str, user_ref: str) -> None:
    """Delete a user: their assignments and memberships go, and their seats are freed."""
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        delete_user_in(conn, ctx, t, resolve_user(conn, t, user_ref))


def delete_user_in(conn: Connection, ctx: Context, tenant_id: str, user: Any) -> None:
    from licensedesk.licensing import service as licensing

    t = tenant_id
    tenancy_repo.lock(conn, t)
    groups = repo.user_group_ids(conn, t, user.id, transitive=True)
    direct_groups = repo.user_group_ids(conn, t, user.id, transitive=False)
    for gid in direct_groups:
        repo.remove_user_members(conn, t, gid, [user.id])
    licensing.user_deleting(conn, ctx, t, user, groups)
    audit.record(
        conn,
        ctx,
        t,
        "user.deleted",
        audit.Target("user", user.id, user.user_principal_name),
        details={"groups": direct_groups},
    )
    repo.delete_terms(conn, t, "user", user.id)
    repo.delete_user(conn, t, user.id)


def get_user(ctx: Context, tenant_ref: str, user_ref: str) -> User:
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        return _user(resolve_user(conn, t, user_ref))


def list_users(
    ctx: Context,
    tenant_ref: str,
    *,
    search: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Page[User]:
    """Users by userPrincipalName; with `search`, those whose userPrincipalName or any word of whose
    displayName starts with it (case-insensitive), best matches first."""
    limit = check_limit(limit)
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        if search is not None and search.strip():
            hits, nxt = _search(conn, t, search, ("user",), cursor, limit)
            found = repo.users_by_ids(conn, t, [h[3] for h in hits])
            return Page([_user(found[h[3]]) for h in hits if h[3] in found], nxt)
        key = decode_cursor(cursor, ("str",))
        rows = repo.users_page(conn, t, str(key[0]) if key else None, limit + 1)
        items = [_user(r) for r in rows[:limit]]
        return Page(items, encode_cursor(rows[limit - 1].upn_key) if len(rows) > limit else None)


def _search(
    conn: Connection, t: str, q: str, kinds: Sequence[str], cursor: str | None, limit: int
) -> tuple[list[tuple[str, int, str, str]], str | None]:
    q = fields.text(q, "search", max_length=200)
    after = decode_cursor(cursor, ("str", "int", "str", "str"))
    hits = repo.search(conn, t, q, kinds, after, limit + 1)
    nxt = encode_cursor(*hits[limit - 1]) if len(hits) > limit else None
    return hits[:limit], nxt


@dataclass
class SearchHit:
    type: str
    id: str
    display_name: str
    user_principal_name: str | None
    matched: str


def search(
    ctx: Context,
    tenant_ref: str,
    q: str,
    *,
    types: Sequence[str] = ("user", "group"),
    cursor: str | None = None,
    limit: int | None = None,
) -> Page[SearchHit]:
    """The portal's one search field: users and groups in one list, closest matches first."""
    limit = check_limit(limit)
    kinds = [k for k in types]
    if not kinds or any(k not in ("user", "group") for k in kinds):
        raise ValidationFailed("types must be user, group or both", field="types")
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        hits, nxt = _search(conn, t, q, kinds, cursor, limit)
        user_rows = repo.users_by_ids(conn, t, [h[3] for h in hits if h[2] == "user"])
        group_rows = repo.groups_by_ids(conn, t, [h[3] for h in hits if h[2] == "group"])
    items = []
    for term, _rank, kind, object_id in hits:
        if kind == "user" and object_id in user_rows:
            u = user_rows[object_id]
            items.append(SearchHit("user", u.id, u.display_name, u.user_principal_name, term))
        elif kind == "group" and object_id in group_rows:
            g = group_rows[object_id]
            items.append(SearchHit("group", g.id, g.display_name, None, term))
    return Page(items, nxt)


# ---------------------------------------------------------------- groups


def create_group(
    ctx: Context,
    tenant_ref: str,
    display_name: str,
    *,
    description: str = "",
    external_id: str | None = None,
    members: dict[str, Sequence[str]] | None = None,
) -> Group:
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        row = create_group_in(conn, ctx, t, display_name, description=description, external_id=external_id)
        if members and (members.get("users") or members.get("groups")):
            add_members_in(
                conn, ctx, t, row, users=members.get("users") or (), groups=members.get("groups") or ()
            )
        return _group(repo.group(conn, t, row.id))


def create_group_in(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    display_name: str,
    *,
    description: str = "",
    external_id: str | None = None,
) -> Any:
    display_name = fields.text(display_name, "displayName", max_length=256)
    description = fields.text(description or "", "description", max_length=1024, required=False)
    external_id = fields.optional_text(external_id, "externalId", max_length=200)
    if external_id and repo.group_by_external_id(conn, tenant_id, external_id) is not None:
        raise Duplicate("group", "externalId", external_id)
    now = ctx.clock.now()
    group_id = str(uuid.uuid4())
    repo.insert_group(
        conn,
        tenant_id=tenant_id,
        id=group_id,
        display_name=display_name,
        name_key=display_name.lower()[:400],
        description=description,
        external_id=external_id,
        created_at=now,
        updated_at=now,
    )
    repo.replace_terms(conn, tenant_id, "group", group_id, repo.search_terms(display_name))
    audit.record(
        conn,
        ctx,
        tenant_id,
        "group.created",
        audit.Target("group", group_id, display_name),
        details={"description": description, "externalId": external_id},
        at=now,
    )
    return repo.group(conn, tenant_id, group_id)


def update_group(
    ctx: Context,
    tenant_ref: str,
    group_id: str,
    *,
    display_name: str = UNSET,
    description: str = UNSET,
    external_id: str | None = UNSET,
) -> Group:
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        group = resolve_group(conn, t, group_id)
        return _group(
            update_group_in(
                conn,
                ctx,
                t,
                group,
                display_name=display_name,
                description=description,
                external_id=external_id,
            )
        )


def update_group_in(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    group: Any,
    *,
    display_name: str = UNSET,
    description: str = UNSET,
    external_id: str | None = UNSET,
) -> Any:
    t = tenant_id
    values: dict[str, Any] = {}
    if display_name is not UNSET:
        values["display_name"] = fields.text(display_name, "displayName", max_length=256)
        values["name_key"] = values["display_name"].lower()[:400]
    if description is not UNSET:
        values["description"] = fields.text(description or "", "description", max_length=1024, required=False)
    if external_id is not UNSET:
        values["external_id"] = fields.optional_text(external_id, "externalId", max_length=200)
        other = repo.group_by_external_id(conn, t, values["external_id"]) if values["external_id"] else None
        if other is not None and other.id != group.id:
            raise Duplicate("group", "externalId", values["external_id"])
    changed = {k: v for k, v in values.items() if getattr(group, k) != v}
    if changed:
        now = ctx.clock.now()
        repo.update_group(conn, t, group.id, updated_at=now, **changed)
        if "display_name" in changed:
            repo.replace_terms(conn, t, "group", group.id, repo.search_terms(changed["display_name"]))
        audit.record(
            conn,
            ctx,
            t,
            "group.updated",
            audit.Target("group", group.id, changed.get("display_name", group.display_name)),
            details=_camel({k: v for k, v in changed.items() if k != "name_key"}),
            at=now,
        )
    return repo.group(conn, t, group.id)


def delete_group(ctx: Context, tenant_ref: str, group_id: str) -> None:
    """Delete a group that has no licenses assigned (409 group_has_licenses otherwise)."""
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        delete_group_in(conn, ctx, t, resolve_group(conn, t, group_id))


def delete_group_in(conn: Connection, ctx: Context, tenant_id: str, group: Any) -> None:
    from licensedesk.licensing import service as licensing

    t = tenant_id
    tenancy_repo.lock(conn, t)
    licensing.group_deleting(conn, ctx, t, group)
    parents = repo.parent_ids(conn, t, group.id)
    for parent in parents:
        repo.remove_group_member(conn, t, parent, group.id)
    repo.delete_terms(conn, t, "group", group.id)
    repo.delete_group(conn, t, group.id)
    audit.record(
        conn,
        ctx,
        t,
        "group.deleted",
        audit.Target("group", group.id, group.display_name),
        details={"parents": parents},
    )


def get_group(ctx: Context, tenant_ref: str, group_id: str) -> Group:
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        return _group(resolve_group(conn, t, group_id))


def list_groups(
    ctx: Context,
    tenant_ref: str,
    *,
    search: str | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Page[Group]:
    limit = check_limit(limit)
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        if search is not None and search.strip():
            hits, nxt = _search(conn, t, search, ("group",), cursor, limit)
            found = repo.groups_by_ids(conn, t, [h[3] for h in hits])
            return Page([_group(found[h[3]]) for h in hits if h[3] in found], nxt)
        key = decode_cursor(cursor, ("str", "str"))
        rows = repo.groups_page(conn, t, key, limit + 1)
        items = [_group(r) for r in rows[:limit]]
        nxt = encode_cursor(rows[limit - 1].name_key, rows[limit - 1].id) if len(rows) > limit else None
        return Page(items, nxt)


# ---------------------------------------------------------------- memberships


@dataclass
class MembershipChange:
    added_users: list[str]
    added_groups: list[str]
    removed_users: list[str]
    removed_groups: list[str]


def add_members(
    ctx: Context, tenant_ref: str, group_id: str, *, users: Sequence[str] = (), groups: Sequence[str] = ()
) -> MembershipChange:
    """Add users and groups to a group. Members already there are left as they are; a group that would
    make a cycle is refused (409 membership_cycle) and nothing changes."""
    if not users and not groups:
        raise ValidationFailed("name at least one user or group", field="users")
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        tenancy_repo.lock(conn, t)
        group = resolve_group(conn, t, group_id)
        return add_members_in(conn, ctx, t, group, users=users, groups=groups)


def add_members_in(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    group: Any,
    *,
    users: Sequence[str] = (),
    groups: Sequence[str] = (),
) -> MembershipChange:
    from licensedesk.licensing import service as licensing

    t = tenant_id
    user_rows = list({u.id: u for u in resolve_users(conn, t, users)}.values())
    group_rows = list({g.id: g for g in resolve_groups(conn, t, groups)}.values())
    for member in group_rows:
        if repo.is_within(conn, t, member.id, group.id):
            raise MembershipCycle(group.id, member.id)
    now = ctx.clock.now()
    existing = repo.existing_user_members(conn, t, group.id, [u.id for u in user_rows])
    new_users = [u for u in user_rows if u.id not in existing]
    repo.add_user_members(conn, t, group.id, [u.id for u in new_users], now)
    new_groups = [g for g in group_rows if not repo.has_group_member(conn, t, group.id, g.id)]
    for member in new_groups:
        repo.add_group_member(conn, t, group.id, member.id, now)
    target = audit.Target("group", group.id, group.display_name)
    # one statement for many members (a SCIM PATCH or an import can add thousands)
    audit.record_many(
        conn,
        ctx,
        t,
        [
            (
                "group.member_added",
                target,
                {"memberType": "user", "memberId": u.id, "userPrincipalName": u.user_principal_name},
            )
            for u in new_users
        ],
        at=now,
    )
    for g in new_groups:
        audit.record(
            conn,
            ctx,
            t,
            "group.member_added",
            target,
            details={"memberType": "group", "memberId": g.id, "displayName": g.display_name},
            at=now,
        )
    if new_users:
        licensing.membership_changed(conn, ctx, t, group.id, added_users=[u.id for u in new_users])
    for g in new_groups:
        licensing.membership_changed(conn, ctx, t, group.id, nested_group=g.id, nesting_added=True)
    if new_users or new_groups:
        repo.update_group(conn, t, group.id, updated_at=now)
    return MembershipChange([u.id for u in new_users], [g.id for g in new_groups], [], [])


def remove_members(
    ctx: Context, tenant_ref: str, group_id: str, *, users: Sequence[str] = (), groups: Sequence[str] = ()
) -> MembershipChange:
    """Remove users and groups from a group; naming one that is not a member is a 404."""
    if not users and not groups:
        raise ValidationFailed("name at least one user or group", field="users")
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        tenancy_repo.lock(conn, t)
        group = resolve_group(conn, t, group_id)
        return remove_members_in(conn, ctx, t, group, users=users, groups=groups)


def remove_member(ctx: Context, tenant_ref: str, group_id: str, member_id: str) -> MembershipChange:
    """Remove one member, user or group, by id (a user may also be named by userPrincipalName)."""
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        tenancy_repo.lock(conn, t)
        group = resolve_group(conn, t, group_id)
        if repo.group(conn, t, member_id) is not None:
            return remove_members_in(conn, ctx, t, group, groups=[member_id])
        return remove_members_in(conn, ctx, t, group, users=[member_id])


def remove_members_in(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    group: Any,
    *,
    users: Sequence[str] = (),
    groups: Sequence[str] = (),
) -> MembershipChange:
    from licensedesk.licensing import service as licensing

    t = tenant_id
    user_rows = list({u.id: u for u in resolve_users(conn, t, users)}.values())
    group_rows = list({g.id: g for g in resolve_groups(conn, t, groups)}.values())
    existing = repo.existing_user_members(conn, t, group.id, [u.id for u in user_rows])
    for u in user_rows:
        if u.id not in existing:
            raise NotFound("member", u.id)
    for g in group_rows:
        if not repo.has_group_member(conn, t, group.id, g.id):
            raise NotFound("member", g.id)
    now = ctx.clock.now()
    repo.remove_user_members(conn, t, group.id, [u.id for u in user_rows])
    target = audit.Target("group", group.id, group.display_name)
    audit.record_many(
        conn,
        ctx,
        t,
        [
            (
                "group.member_removed",
                target,
                {"memberType": "user", "memberId": u.id, "userPrincipalName": u.user_principal_name},
            )
            for u in user_rows
        ],
        at=now,
    )
    if user_rows:
        licensing.membership_changed(conn, ctx, t, group.id, removed_users=[u.id for u in user_rows])
    for g in group_rows:
        # queue first: the job's users are the nested group's members, read while still nested
        licensing.membership_changed(conn, ctx, t, group.id, nested_group=g.id, nesting_added=False)
        repo.remove_group_member(conn, t, group.id, g.id)
        audit.record(
            conn,
            ctx,
            t,
            "group.member_removed",
            target,
            details={"memberType": "group", "memberId": g.id, "displayName": g.display_name},
            at=now,
        )
    if user_rows or group_rows:
        repo.update_group(conn, t, group.id, updated_at=now)
    return MembershipChange([], [], [u.id for u in user_rows], [g.id for g in group_rows])


def remove_all_members(ctx: Context, tenant_ref: str, group_id: str) -> MembershipChange:
    """Empty a group (SCIM's "remove all members")."""
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        tenancy_repo.lock(conn, t)
        group = resolve_group(conn, t, group_id)
        members = repo.direct_members_page(conn, t, group.id, None, 10_000_000)
        return remove_members_in(
            conn,
            ctx,
            t,
            group,
            users=[i for k, i in members if k == "user"],
            groups=[i for k, i in members if k == "group"],
        )


def change_members_in(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    group: Any,
    *,
    add_users: Sequence[str] = (),
    add_groups: Sequence[str] = (),
    remove_users: Sequence[str] = (),
    remove_groups: Sequence[str] = (),
) -> MembershipChange:
    """Add and remove members of a group inside the caller's transaction (SCIM's PATCH and PUT)."""
    tenancy_repo.lock(conn, tenant_id)
    removed = MembershipChange([], [], [], [])
    if remove_users or remove_groups:
        removed = remove_members_in(conn, ctx, tenant_id, group, users=remove_users, groups=remove_groups)
    added = MembershipChange([], [], [], [])
    if add_users or add_groups:
        added = add_members_in(conn, ctx, tenant_id, group, users=add_users, groups=add_groups)
    return MembershipChange(
        added.added_users, added.added_groups, removed.removed_users, removed.removed_groups
    )


def direct_member_ids(conn: Connection, tenant_id: str, group_id: str) -> list[tuple[str, str]]:
    """Every direct member of a group as (kind, id), kind user or group."""
    return repo.direct_members_page(conn, tenant_id, group_id, None, 10_000_000)


def list_members(
    ctx: Context,
    tenant_ref: str,
    group_id: str,
    *,
    transitive: bool = False,
    cursor: str | None = None,
    limit: int | None = None,
) -> Page[Member]:
    """Members of a group, groups first then users; with transitive, everyone reachable through it."""
    limit = check_limit(limit)
    after = decode_cursor(cursor, ("str", "str"))
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        group = resolve_group(conn, t, group_id)
        page = (repo.transitive_members_page if transitive else repo.direct_members_page)(
            conn, t, group.id, after, limit + 1
        )
        user_rows = repo.users_by_ids(conn, t, [i for k, i in page[:limit] if k == "user"])
        group_rows = repo.groups_by_ids(conn, t, [i for k, i in page[:limit] if k == "group"])
    items = []
    for kind, object_id in page[:limit]:
        if kind == "user":
            u = user_rows[object_id]
            items.append(Member("user", u.id, u.display_name, u.user_principal_name))
        else:
            g = group_rows[object_id]
            items.append(Member("group", g.id, g.display_name))
    return Page(items, encode_cursor(*page[limit - 1]) if len(page) > limit else None)


def user_groups(ctx: Context, tenant_ref: str, user_ref: str, *, transitive: bool = False) -> list[Group]:
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        user = resolve_user(conn, t, user_ref)
        ids = repo.user_group_ids(conn, t, user.id, transitive=transitive)
        rows = repo.groups_by_ids(conn, t, ids)
    return sorted((_group(rows[i]) for i in ids if i in rows), key=lambda g: (g.display_name.lower(), g.id))


def count_users(ctx: Context, tenant_ref: str) -> int:
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        return repo.count_users(conn, t)
