"""Licensing use cases: assign, unassign, reassign, reprocess, and the read models of the Licenses area.

Direct assignments take effect inside the request. Group assignments and membership changes are queued
as jobs in the same transaction and processed by the worker (licensing/processing.py); the seats they
will need are reserved at once, so a later request never takes a seat an earlier accepted one needs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from licensedesk.audit import service as audit
from licensedesk.catalog import service as catalog
from licensedesk.context import Context
from licensedesk.db.engine import after_commit
from licensedesk.directory import service as directory
from licensedesk.errors import (
    AlreadyAssigned,
    GroupHasLicenses,
    LicenseInherited,
    NotAssigned,
    NotEnoughLicenses,
    NotFound,
    QuantityBelowAssigned,
    ValidationFailed,
)
from licensedesk.licensing import repository as repo
from licensedesk.licensing import seating
from licensedesk.licensing.seating import SEATED, Units
from licensedesk.pagination import Page, check_limit, decode_cursor, encode_cursor
from licensedesk.tenancy import service as tenancy

# ---------------------------------------------------------------- worker wake-up


_wake_listeners: list[Any] = []


def on_jobs_queued(listener: Any) -> None:
    """Register a callable run after a transaction that queued jobs commits (the in-process worker)."""
    _wake_listeners.append(listener)


def _jobs_queued(conn: Connection) -> None:
    for listener in list(_wake_listeners):
        after_commit(conn, listener)


# ---------------------------------------------------------------- the engine of every change


def apply_scope(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    plan_id: str,
    batch: str,
    now: datetime,
    *,
    release_jobs: Sequence[str] = (),
    reseat_all: bool = False,
) -> None:
    """Recompute the licenses of the scope's users for one plan, reseat the pool from the first claim
    whose order changed, and write counters, group status and audit events. The pool must be locked."""
    # a reseat of the whole pool (seats changed) has no scope: nothing to recompute, only to reseat
    since = (
        None
        if repo.scope_is_empty(conn, tenant_id, batch)
        else repo.recompute_scope(conn, tenant_id, plan_id, batch, now)
    )
    released = repo.release(conn, tenant_id, plan_id, release_jobs) if release_jobs else None
    if released is not None:
        since = min(since, (released, "")) if since else (released, "")
    if reseat_all:
        since = repo.FIRST_KEY
    if since is not None:
        pool = repo.pool(conn, tenant_id, plan_id)
        transitions = repo.reseat(conn, tenant_id, plan_id, batch, repo.units_of(pool), since, now)
        if transitions:
            repo.apply_state_deltas(conn, tenant_id, plan_id, transitions, now)
            repo.apply_group_status_deltas(conn, tenant_id, plan_id, batch)
            audit.record_rows(
                conn,
                tenant_id,
                repo.seat_change_events(
                    tenant_id,
                    plan_id,
                    batch,
                    now,
                    (ctx.actor.type, ctx.actor.id, ctx.actor.name),
                    ctx.request_id,
                ),
            )
    repo.clear_batch(conn, tenant_id, batch, keep_scope=True)


def apply_to_users(
    conn: Connection, ctx: Context, tenant_id: str, plan_id: str, user_ids: Sequence[str], now: datetime
) -> None:
    """Recompute these users' licenses of one plan (direct changes, inside the request)."""
    batch = repo.new_batch()
    repo.scope_users(conn, tenant_id, batch, user_ids)
    apply_scope(conn, ctx, tenant_id, plan_id, batch, now)
    repo.clear_batch(conn, tenant_id, batch)


def recompute_users(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    user_ids: Iterable[str] = (),
    *,
    user_select: Any = None,
    plans: Sequence[str] | None = None,
    release_jobs: Sequence[str] = (),
    now: datetime | None = None,
) -> None:
    """Recompute every license of these users (all plans they hold or have a source of)."""
    now = now or ctx.clock.now()
    batch = repo.new_batch()
    repo.scope_users(conn, tenant_id, batch, user_ids)
    if user_select is not None:
        repo.scope_from(conn, tenant_id, batch, user_select)
    plan_ids = set(plans) if plans is not None else set(repo.scope_plans(conn, tenant_id, batch))
    if release_jobs:
        plan_ids.update(repo.plans_with_reservations_for_jobs(conn, tenant_id, release_jobs))
    for plan_id in sorted(plan_ids):  # one order everywhere, so pool locks never deadlock
        repo.lock_pool(conn, tenant_id, plan_id, now)
    for plan_id in sorted(plan_ids):
        apply_scope(conn, ctx, tenant_id, plan_id, batch, now, release_jobs=release_jobs)
    repo.clear_batch(conn, tenant_id, batch)


# ---------------------------------------------------------------- assign


@dataclass
class AssignResult:
    plan_id: str
    needed: int
    available: int
    would_succeed: bool
    users: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False


def _pool_available(conn: Connection, tenant_id: str, plan_id: str) -> int:
    pool = repo.pool(conn, tenant_id, plan_id)
    if pool is None:
        return 0
    assigned = pool.seated_active + pool.seated_warning + pool.seated_suspended
    return seating.available(repo.units_of(pool), assigned, pool.reserved)


def _check_targets(users: Sequence[str], groups: Sequence[str]) -> None:
    if not users and not groups:
        raise ValidationFailed("name at least one user or group", field="users")
    if len(users) + len(groups) > 10000:
        raise ValidationFailed("at most 10000 users and groups at once", field="users")


def assign(
    ctx: Context,
    tenant_ref: str,
    plan_id: str,
    *,
    users: Sequence[str] = (),
    groups: Sequence[str] = (),
    allow_partial: bool = False,
    dry_run: bool = False,
) -> AssignResult:
    """Assign a plan to users and/or groups: all or nothing unless allow_partial (SPEC: Assigning)."""
    _check_targets(users, groups)
    with ctx.db.write() as conn:
        tenant = tenancy.resolve(conn, tenant_ref)
        return assign_in(
            conn,
            ctx,
            tenant.id,
            plan_id,
            users=users,
            groups=groups,
            allow_partial=allow_partial,
            dry_run=dry_run,
        )


def assign_in(
    conn: Connection,
    ctx: Context,
    t: str,
    plan_id: str,
    *,
    users: Sequence[str] = (),
    groups: Sequence[str] = (),
    allow_partial: bool = False,
    dry_run: bool = False,
) -> AssignResult:
    """`assign` inside the caller's transaction (the marketplace licenses the buyer with its purchase)."""
    plan = catalog.plan_in(conn, plan_id)
    now = ctx.clock.now()
    if not dry_run:  # a dry run changes nothing, not even the (possibly new) pool row
        repo.lock_pool(conn, t, plan.id, now)
    user_rows = directory.resolve_users(conn, t, users)
    group_rows = directory.resolve_groups(conn, t, groups)
    user_ids = list(dict.fromkeys(u.id for u in user_rows))
    group_ids = list(dict.fromkeys(g.id for g in group_rows))

    batch = repo.new_batch()
    repo.scope_users(conn, t, batch, user_ids)
    for gid in group_ids:
        repo.scope_from(conn, t, batch, directory.transitive_user_ids_select(t, gid))
    needed = repo.count_needing_seat(conn, t, plan.id, batch)
    available = _pool_available(conn, t, plan.id)
    repo.clear_batch(conn, t, batch)
    ok = needed <= available
    result = AssignResult(plan.id, needed, available, ok, dry_run=dry_run)
    if dry_run:
        result.users = [{"userId": u, "state": None, "error": None} for u in user_ids]
        result.groups = [{"groupId": g, "processingState": None} for g in group_ids]
        return result
    if not ok and not allow_partial:
        raise NotEnoughLicenses(needed, available)

    # Group sources are granted at `now`, direct ones a microsecond later: within one request the
    # group's members (whose seats are reserved below) come first in claim order.
    new_groups = [g for g in group_rows if repo.group_assignment(conn, t, plan.id, g.id) is None]
    for g in dict((g.id, g) for g in new_groups).values():
        repo.insert_group_assignment(conn, t, plan.id, g.id, now)
        audit.record(
            conn,
            ctx,
            t,
            "license.assigned",
            audit.Target("group", g.id, g.display_name),
            plan_id=plan.id,
            at=now,
        )
    # the groups' seats are reserved first: their members' claims (at `now`) come before the named users'
    # (at `now` + 1 us); named users who are members of one of these groups come first of all (see below),
    # so the seats they need are not the groups' to reserve
    queued_ids = {g.id for g in new_groups}
    named_members: set[str] = set()  # users named in the request who are also members of a new group
    queued_groups: list[tuple[str, int]] = []
    for gid in group_ids:
        if gid not in queued_ids:
            continue
        if len(group_ids) == 1 and not user_ids:
            group_needed = needed  # the one group is the whole scope counted above
        else:
            batch = repo.new_batch()
            repo.scope_from(conn, t, batch, directory.transitive_user_ids_select(t, gid))
            # users named in the request are seated by it below, not by the group's job
            named_members |= repo.unscope_users(conn, t, batch, user_ids)
            group_needed = repo.count_needing_seat(conn, t, plan.id, batch)
            repo.clear_batch(conn, t, batch)
        queued_groups.append((gid, group_needed))
    named_first = 0
    if named_members:
        batch = repo.new_batch()
        repo.scope_users(conn, t, batch, named_members)
        named_first = repo.count_needing_seat(conn, t, plan.id, batch)
        repo.clear_batch(conn, t, batch)
    for gid, group_needed in queued_groups:
        job_id = repo.enqueue_job(conn, t, "group_plan", gid, now, plan_id=plan.id)
        free = max(0, _pool_available(conn, t, plan.id) - named_first)
        repo.reserve(conn, t, plan.id, job_id, now, min(group_needed, free))
    if queued_ids:
        _jobs_queued(conn)

    already = repo.direct_user_ids(conn, t, plan.id, user_ids)
    new_users = [u for u in dict((u.id, u) for u in user_rows).values() if u.id not in already]
    direct_at = now + timedelta(microseconds=1)
    # A named user who is also a member of a group of this request claims at `now` through the group, tied
    # with the group's members, whose job decides later: the empty claim key puts the named ones first
    # among those ties, so the state answered now is the state the job leaves (SPEC: no answer of assign
    # is contradicted by processing).
    first = [u.id for u in new_users if u.id in named_members]
    repo.insert_direct(conn, t, plan.id, first, direct_at, claim_key="")
    repo.insert_direct(conn, t, plan.id, [u.id for u in new_users if u.id not in named_members], direct_at)
    for u in new_users:
        audit.record(
            conn,
            ctx,
            t,
            "license.assigned",
            audit.Target("user", u.id, u.user_principal_name),
            plan_id=plan.id,
            at=now,
        )
    if new_users:
        apply_to_users(conn, ctx, t, plan.id, [u.id for u in new_users], now)

    states = repo.states_of(conn, t, plan.id, user_ids)
    result.users = [
        {"userId": u, "state": states.get(u), "error": seating.error_of(states.get(u, ""))} for u in user_ids
    ]
    result.groups = [
        {"groupId": g, "processingState": repo.group_assignment(conn, t, plan.id, g).processing_state}
        for g in group_ids
    ]
    return result


# ---------------------------------------------------------------- unassign and reassign


@dataclass
class UnassignResult:
    plan_id: str
    users: list[dict[str, Any]]
    groups: list[dict[str, Any]]


def _refuse_unless_direct(conn: Connection, t: str, plan_id: str, user: Any) -> None:
    if repo.direct_assignment(conn, t, plan_id, user.id) is not None:
        return
    sources = repo.user_group_sources(conn, t, user.id, plan_id)
    if sources:
        raise LicenseInherited(
            user.user_principal_name, [{"id": s.group_id, "displayName": s.display_name} for s in sources]
        )
    raise NotAssigned(f"{user.user_principal_name} has no assignment of {plan_id}", userId=user.id)


def unassign(
    ctx: Context, tenant_ref: str, plan_id: str, *, users: Sequence[str] = (), groups: Sequence[str] = ()
) -> UnassignResult:
    _check_targets(users, groups)
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        plan = catalog.plan_in(conn, plan_id)
        now = ctx.clock.now()
        repo.lock_pool(conn, t, plan.id, now)
        user_rows = list({u.id: u for u in directory.resolve_users(conn, t, users)}.values())
        group_rows = list({g.id: g for g in directory.resolve_groups(conn, t, groups)}.values())
        for u in user_rows:
            _refuse_unless_direct(conn, t, plan.id, u)
        for g in group_rows:
            if repo.group_assignment(conn, t, plan.id, g.id) is None:
                raise NotAssigned(f"group {g.display_name} has no assignment of {plan.id}", groupId=g.id)

        repo.delete_direct(conn, t, plan.id, [u.id for u in user_rows])
        for u in user_rows:
            audit.record(
                conn,
                ctx,
                t,
                "license.unassigned",
                audit.Target("user", u.id, u.user_principal_name),
                plan_id=plan.id,
                at=now,
            )
        if user_rows:
            apply_to_users(conn, ctx, t, plan.id, [u.id for u in user_rows], now)
        for g in group_rows:
            repo.delete_group_assignment(conn, t, plan.id, g.id)
            repo.enqueue_job(conn, t, "group_plan", g.id, now, plan_id=plan.id)
            audit.record(
                conn,
                ctx,
                t,
                "license.unassigned",
                audit.Target("group", g.id, g.display_name),
                plan_id=plan.id,
                at=now,
            )
        if group_rows:
            _jobs_queued(conn)
        states = repo.states_of(conn, t, plan.id, [u.id for u in user_rows])
        return UnassignResult(
            plan.id,
            [
                {"userId": u.id, "state": states.get(u.id), "error": seating.error_of(states.get(u.id, ""))}
                for u in user_rows
            ],
            [{"groupId": g.id, "processingState": "Queued"} for g in group_rows],
        )


@dataclass
class ReassignResult:
    plan_id: str
    from_user: dict[str, Any]
    to_user: dict[str, Any]


def reassign(ctx: Context, tenant_ref: str, plan_id: str, from_ref: str, to_ref: str) -> ReassignResult:
    """Move a direct assignment to another user; `to` takes over the claim time and so the seat."""
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        plan = catalog.plan_in(conn, plan_id)
        now = ctx.clock.now()
        repo.lock_pool(conn, t, plan.id, now)
        src, dst = directory.resolve_users(conn, t, [from_ref, to_ref])
        if src.id == dst.id:
            raise ValidationFailed("from and to are the same user", field="to")
        _refuse_unless_direct(conn, t, plan.id, src)
        if repo.direct_assignment(conn, t, plan.id, dst.id) is not None:
            raise AlreadyAssigned(f"{dst.user_principal_name} already has {plan.id} assigned", userId=dst.id)
        moved = repo.direct_assignment(conn, t, plan.id, src.id)
        repo.delete_direct(conn, t, plan.id, [src.id])
        # `to` takes `from`'s place in claim order: its grant time, and its tie-break among equal times
        key = src.id if moved.claim_key is None else moved.claim_key
        repo.insert_direct(conn, t, plan.id, [dst.id], moved.assigned_at, claim_key=key)
        audit.record(
            conn,
            ctx,
            t,
            "license.reassigned",
            audit.Target("user", dst.id, dst.user_principal_name),
            plan_id=plan.id,
            at=now,
            details={"fromUserId": src.id, "fromUserPrincipalName": src.user_principal_name},
        )
        apply_to_users(conn, ctx, t, plan.id, [src.id, dst.id], now)
        states = repo.states_of(conn, t, plan.id, [src.id, dst.id])
        return ReassignResult(
            plan.id,
            {
                "userId": src.id,
                "state": states.get(src.id),
                "error": seating.error_of(states.get(src.id, "")),
            },
            {
                "userId": dst.id,
                "state": states.get(dst.id),
                "error": seating.error_of(states.get(dst.id, "")),
            },
        )


# ---------------------------------------------------------------- reprocess


def reprocess_user(ctx: Context, tenant_ref: str, user_ref: str) -> list[LicenseOfUser]:
    """Recompute a user's licenses now (normally never needed: every change is applied as it happens)."""
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        user = directory.resolve_user(conn, t, user_ref)
        recompute_users(conn, ctx, t, [user.id])
        audit.record(
            conn, ctx, t, "user.reprocessed", audit.Target("user", user.id, user.user_principal_name)
        )
        return _user_licenses(conn, t, user.id)


def reprocess_group(ctx: Context, tenant_ref: str, group_id: str) -> list[GroupLicense]:
    """Queue a recomputation of every member of the group, for every plan."""
    with ctx.db.write() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        group = directory.resolve_group(conn, t, group_id)
        now = ctx.clock.now()
        repo.enqueue_users_from(conn, t, group.id, directory.transitive_user_ids_select(t, group.id), now)
        repo.set_processing_state(conn, t, directory.ancestor_ids(conn, t, group.id), "Queued")
        audit.record(conn, ctx, t, "group.reprocessed", audit.Target("group", group.id, group.display_name))
        _jobs_queued(conn)
        return _group_licenses(conn, t, group.id)


# ---------------------------------------------------------------- hooks for the directory and billing


def users_activity_changed(conn: Connection, ctx: Context, tenant_id: str, user_ids: Sequence[str]) -> None:
    """A user was deactivated (frees the seat; the longest-waiting user gets it) or reactivated."""
    recompute_users(conn, ctx, tenant_id, user_ids)


def user_deleting(
    conn: Connection, ctx: Context, tenant_id: str, user: Any, group_ids: Sequence[str]
) -> None:
    """Before a user is deleted (after their memberships were removed): remove their assignments, free
    their seats, and recount the groups they were in (`group_ids`, transitive)."""
    now = ctx.clock.now()
    for plan_id in repo.user_direct_plans(conn, tenant_id, user.id):
        repo.lock_pool(conn, tenant_id, plan_id, now)
        repo.delete_direct(conn, tenant_id, plan_id, [user.id])
        audit.record(
            conn,
            ctx,
            tenant_id,
            "license.unassigned",
            audit.Target("user", user.id, user.user_principal_name),
            plan_id=plan_id,
            at=now,
        )
    recompute_users(conn, ctx, tenant_id, [user.id], now=now)
    repo.recount_group_status(conn, tenant_id, group_ids, now, complete=False)


def membership_changed(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    group_id: str,
    *,
    added_users: Sequence[str] = (),
    removed_users: Sequence[str] = (),
    nested_group: str | None = None,
    nesting_added: bool = True,
) -> None:
    """Queue the license effects of a membership change of a group (users added or removed, or a group
    nested or un-nested), reserving the seats that new members of licensed groups will take."""
    ancestors = directory.ancestor_ids(conn, tenant_id, group_id)
    assigned = repo.assigned_groups_among(conn, tenant_id, ancestors)
    if not assigned:
        # no license reaches through this group; members' group status needs nothing either
        return
    now = ctx.clock.now()
    plan_ids = sorted({p for p, _g in assigned})
    # the pools first, before any group status row is written: a worker holds a pool while it writes the
    # status of the groups it processed, so the other order deadlocks with it (found by
    # tests/reliability/test_scale_out.py: two API processes and two workers on PostgreSQL)
    for plan_id in plan_ids:
        repo.lock_pool(conn, tenant_id, plan_id, now)
    user_ids = [*added_users, *removed_users]
    job_id = repo.enqueue_job(conn, tenant_id, "users", group_id, now, user_ids=user_ids)
    if nested_group is not None:
        repo.enqueue_users_from_into(
            conn, tenant_id, job_id, directory.transitive_user_ids_select(tenant_id, nested_group)
        )
    repo.set_processing_state(conn, tenant_id, ancestors, "Queued")
    adds = bool(added_users) or (nested_group is not None and nesting_added)
    if adds:
        batch = repo.new_batch()
        repo.scope_users(conn, tenant_id, batch, added_users)
        if nested_group is not None and nesting_added:
            repo.scope_from(
                conn, tenant_id, batch, directory.transitive_user_ids_select(tenant_id, nested_group)
            )
        for plan_id in plan_ids:
            needed = repo.count_needing_seat(conn, tenant_id, plan_id, batch)
            repo.reserve(
                conn, tenant_id, plan_id, job_id, now, min(needed, _pool_available(conn, tenant_id, plan_id))
            )
        repo.clear_batch(conn, tenant_id, batch)
    _jobs_queued(conn)


def group_deleting(conn: Connection, ctx: Context, tenant_id: str, group: Any) -> None:
    """Refuse to delete a group with licenses; otherwise queue the effects on its members of leaving the
    groups it was nested in."""
    plans = [a.plan_id for a in repo.group_plans(conn, tenant_id, group.id)]
    if plans:
        raise GroupHasLicenses(group.display_name, plans)
    now = ctx.clock.now()
    for parent in directory.parent_ids(conn, tenant_id, group.id):
        if repo.assigned_groups_among(conn, tenant_id, directory.ancestor_ids(conn, tenant_id, parent)):
            repo.enqueue_users_from(
                conn, tenant_id, parent, directory.transitive_user_ids_select(tenant_id, group.id), now
            )
            repo.set_processing_state(
                conn, tenant_id, directory.ancestor_ids(conn, tenant_id, parent), "Queued"
            )
            _jobs_queued(conn)


def lock_pool(conn: Connection, ctx: Context, tenant_id: str, plan_id: str) -> Any:
    return repo.lock_pool(conn, tenant_id, plan_id, ctx.clock.now())


def pool_units_changed(
    conn: Connection,
    ctx: Context,
    tenant_id: str,
    plan_id: str,
    units: Units,
    *,
    has_subscriptions: bool,
    force: bool,
) -> None:
    """The subscriptions of a plan changed. Refuse fewer seats than assigned unless forced; then apply
    the seating rule: the most recently licensed lose their seats first, each audited. The pool must be
    locked (lock_pool) before the subscriptions were read."""
    now = ctx.clock.now()
    pool = repo.pool(conn, tenant_id, plan_id)
    assigned = pool.seated_active + pool.seated_warning + pool.seated_suspended
    if units.seats < assigned and not force:
        raise QuantityBelowAssigned(units.seats, assigned)
    repo.set_units(conn, tenant_id, plan_id, units, has_subscriptions, now)
    batch = repo.new_batch()
    apply_scope(conn, ctx, tenant_id, plan_id, batch, now, reseat_all=True)
    repo.clear_batch(conn, tenant_id, batch)


# ---------------------------------------------------------------- read models


@dataclass
class LicenseRow:
    plan_id: str
    plan_name: str
    product_id: str
    product_name: str
    sp_identifier: str
    purchased: int
    assigned: int
    available: int
    waiting: int
    units: dict[str, int]
    status: str
    reserved: int


def _row(pool: Any, plans: dict[str, catalog.Plan], products: dict[str, catalog.Product]) -> LicenseRow:
    units = repo.units_of(pool)
    plan = plans[pool.plan_id]
    assigned = pool.seated_active + pool.seated_warning + pool.seated_suspended
    return LicenseRow(
        plan_id=plan.id,
        plan_name=plan.name,
        product_id=plan.product_id,
        product_name=products[plan.product_id].name,
        sp_identifier=plan.sp_identifier,
        purchased=units.purchased,
        assigned=assigned,
        available=seating.available(units, assigned, pool.reserved),
        waiting=pool.waiting,
        units={"enabled": units.enabled, "warning": units.warning, "suspended": units.suspended},
        status=seating.pool_status(units),
        reserved=pool.reserved,
    )


def licenses_overview(ctx: Context, tenant_ref: str) -> list[LicenseRow]:
    """The Licenses page: one row per plan the tenant has a pool for."""
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        pools = repo.tenant_pools(conn, t)
        plans = catalog.plans_by_id(conn)
        products = catalog.products_by_id(conn)
        return [
            _row(p, plans, products)
            for p in pools
            if p.has_subscriptions
            or p.seated_active
            or p.waiting
            or p.seated_warning
            or p.seated_suspended
            or p.disabled
            or p.reserved
        ]


def license_overview(ctx: Context, tenant_ref: str, plan_id: str) -> LicenseRow:
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        plan = catalog.plan_in(conn, plan_id)
        pool = repo.pool(conn, t, plan.id)
        if pool is None:
            raise NotFound("license pool", plan_id)
        return _row(pool, {plan.id: plan}, catalog.products_by_id(conn))


@dataclass
class LicensedUser:
    user: dict[str, str]
    state: str
    error: str | None
    sources: list[dict[str, Any]]
    claimed_at: datetime
    last_used_at: datetime | None


def licensed_users(
    ctx: Context,
    tenant_ref: str,
    plan_id: str,
    *,
    state: str | None = None,
    source: str | None = None,
    idle_days: int | None = None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Page[LicensedUser]:
    """Users holding the plan, in claim order, with their state and sources."""
    limit = check_limit(limit)
    if state is not None and state not in seating.STATES:
        raise ValidationFailed(f"state must be one of {', '.join(seating.STATES)}", field="state")
    if source is not None and source not in ("direct", "group"):
        raise ValidationFailed("source must be direct or group", field="source")
    if idle_days is not None and not 0 <= idle_days <= 36500:
        raise ValidationFailed("idleDays must be between 0 and 36500", field="idleDays")
    after = decode_cursor(cursor, ("time", "str"))
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        plan = catalog.plan_in(conn, plan_id)
        idle_before = ctx.clock.now() - timedelta(days=idle_days) if idle_days is not None else None
        rows = repo.licensed_users_page(
            conn,
            t,
            plan.id,
            state=state,
            source=source,
            idle_before=idle_before,
            after=after,
            limit=limit + 1,
        )
        items = []
        for r in rows[:limit]:
            sources: list[dict[str, Any]] = [{"type": "direct"}] if r.direct else []
            if r.via_group:
                sources += [
                    {"type": "group", "groupId": s.group_id, "groupName": s.display_name}
                    for s in repo.user_group_sources(conn, t, r.user_id, plan.id)
                ]
            items.append(
                LicensedUser(
                    {
                        "id": r.user_id,
                        "userPrincipalName": r.user_principal_name,
                        "displayName": r.display_name,
                    },
                    r.state,
                    seating.error_of(r.state),
                    sources,
                    r.claim_at,
                    r.last_used_at,
                )
            )
    nxt = encode_cursor(items[-1].claimed_at.isoformat(), items[-1].user["id"]) if len(rows) > limit else None
    return Page(items, nxt)


@dataclass
class LicenseOfUser:
    plan_id: str
    sp_identifier: str
    state: str
    error: str | None
    sources: list[dict[str, Any]]
    claimed_at: datetime
    updated_at: datetime
    last_used_at: datetime | None


def _user_licenses(conn: Connection, t: str, user_id: str) -> list[LicenseOfUser]:
    rows = repo.user_licenses(conn, t, user_id)
    if not rows:
        return []
    plans = catalog.plans_by_id(conn)
    by_plan: dict[str, list[dict[str, Any]]] = {}
    if any(r.via_group for r in rows):
        for s in repo.user_group_sources(conn, t, user_id):
            by_plan.setdefault(s.plan_id, []).append(
                {"type": "group", "groupId": s.group_id, "groupName": s.display_name}
            )
    return [
        LicenseOfUser(
            r.plan_id,
            plans[r.plan_id].sp_identifier,
            r.state,
            seating.error_of(r.state),
            ([{"type": "direct"}] if r.direct else []) + by_plan.get(r.plan_id, []),
            r.claim_at,
            r.updated_at,
            r.last_used_at,
        )
        for r in rows
    ]


def user_licenses(ctx: Context, tenant_ref: str, user_ref: str) -> list[LicenseOfUser]:
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        user = directory.resolve_user(conn, t, user_ref)
        return _user_licenses(conn, t, user.id)


@dataclass
class GroupLicense:
    plan_id: str
    group_id: str
    group_name: str
    processing_state: str
    members_total: int
    members_seated: int
    members_with_errors: int
    assigned_at: datetime
    last_processed_at: datetime | None


def _group_license(r: Any, name: str) -> GroupLicense:
    return GroupLicense(
        r.plan_id,
        r.group_id,
        name,
        r.processing_state,
        r.members_total,
        r.members_seated,
        r.members_with_errors,
        r.assigned_at,
        r.last_processed_at,
    )


def _group_licenses(conn: Connection, t: str, group_id: str) -> list[GroupLicense]:
    group = directory.resolve_group(conn, t, group_id)
    return [_group_license(r, group.display_name) for r in repo.group_plans(conn, t, group.id)]


def group_licenses(ctx: Context, tenant_ref: str, group_id: str) -> list[GroupLicense]:
    """A group's license status per plan."""
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        return _group_licenses(conn, t, group_id)


def plan_groups(
    ctx: Context, tenant_ref: str, plan_id: str, *, cursor: str | None = None, limit: int | None = None
) -> Page[GroupLicense]:
    """The group assignments of a plan with their processing status."""
    limit = check_limit(limit)
    key = decode_cursor(cursor, ("str",))
    with ctx.db.read() as conn:
        t = tenancy.resolve(conn, tenant_ref).id
        plan = catalog.plan_in(conn, plan_id)
        rows = repo.group_assignments_page(conn, t, plan.id, str(key[0]) if key else None, limit + 1)
    items = [_group_license(r, r.display_name) for r in rows[:limit]]
    return Page(items, encode_cursor(items[-1].group_id) if len(rows) > limit else None)


def queue_depth(ctx: Context) -> int:
    with ctx.db.read() as conn:
        return repo.queue_depth(conn)


SEATED_STATES = SEATED


def move_plan_in(conn: Connection, ctx: Context, tenant_id: str, old_plan: str, new_plan: str) -> None:
    """Move every assignment of a plan to another plan, keeping their grant times (and so the users' claim
    order): the marketplace's ChangePlan. Direct ones take effect at once, group ones are queued."""
    now = ctx.clock.now()
    for plan_id in sorted((old_plan, new_plan)):
        repo.lock_pool(conn, tenant_id, plan_id, now)
    moved_users = repo.move_direct_assignments(conn, tenant_id, old_plan, new_plan)
    moved_groups = repo.move_group_assignments(conn, tenant_id, old_plan, new_plan)
    for plan_id in (old_plan, new_plan):
        apply_to_users(conn, ctx, tenant_id, plan_id, moved_users, now)
        for group_id in moved_groups:
            repo.enqueue_job(conn, tenant_id, "group_plan", group_id, now, plan_id=plan_id)
    if moved_users or moved_groups:
        audit.record(
            conn,
            ctx,
            tenant_id,
            "license.plan_changed",
            None,
            plan_id=new_plan,
            at=now,
            details={"fromPlanId": old_plan, "users": len(moved_users), "groups": len(moved_groups)},
        )
    if moved_groups:
        _jobs_queued(conn)
