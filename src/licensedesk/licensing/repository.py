"""Every query of licensing: assignments, the derived licenses, pools and their counters, reservations
and group license status. Every query takes tenant_id first.

The derived state is recomputed set-based in SQL for a *scope* of users written to `work_scope` under a
batch id: the wanted licenses go to `work_desired`, state changes to `work_seat_changes`, from which the
counters, group status deltas and audit events are written in the same transaction.

Licensing reads the directory's tables (users, memberships, the nesting closure) here directly: the
derived state is a function of them, and computing it through the directory's service would mean a
Python loop per member.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    case,
    delete,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    true,
    tuple_,
    union_all,
    update,
)

from licensedesk.db.functions import greatest, new_uuid
from licensedesk.db.planner import no_nested_loops
from licensedesk.db.schema import (
    direct_assignments,
    group_assignments,
    group_closure,
    group_user_members,
    groups,
    licenses,
    pools,
    seat_reservations,
    users,
    work_desired,
    work_scope,
    work_seat_changes,
)
from licensedesk.db.upsert import insert_for
from licensedesk.licensing.seating import (
    ACTIVE,
    DISABLED,
    ERROR,
    SEATED,
    STATES,
    SUSPENDED,
    WARNING,
    Units,
    band_limits,
)

NEW = "New"  # the state of a license the batch creates, while it is ranked (never written to a row)
EPOCH = datetime(1970, 1, 1)
FIRST_KEY = (EPOCH, "")

# ---------------------------------------------------------------- pools


def ensure_pool(conn: Connection, tenant_id: str, plan_id: str, now: datetime) -> None:
    ins = insert_for(conn, pools).values(tenant_id=tenant_id, plan_id=plan_id, updated_at=now)
    conn.execute(ins.on_conflict_do_nothing(index_elements=["tenant_id", "plan_id"]))


def lock_pool(conn: Connection, tenant_id: str, plan_id: str, now: datetime) -> Any:
    """The pool row, locked for this transaction: every change to a plan's seats in a tenant goes
    through here first, so concurrent assigns count seats one after another."""
    ensure_pool(conn, tenant_id, plan_id, now)
    stmt = select(pools).where(pools.c.tenant_id == tenant_id, pools.c.plan_id == plan_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(key_share=True)
    return conn.execute(stmt).one()


def pool(conn: Connection, tenant_id: str, plan_id: str) -> Any:
    return conn.execute(
        select(pools).where(pools.c.tenant_id == tenant_id, pools.c.plan_id == plan_id)
    ).first()


def tenant_pools(conn: Connection, tenant_id: str, *, with_subscriptions_only: bool = False) -> list[Any]:
    stmt = select(pools).where(pools.c.tenant_id == tenant_id).order_by(pools.c.plan_id)
    if with_subscriptions_only:
        stmt = stmt.where(pools.c.has_subscriptions.is_(True))
    return list(conn.execute(stmt))


def units_of(row: Any) -> Units:
    return Units(row.enabled, row.warning, row.suspended)


def set_units(
    conn: Connection, tenant_id: str, plan_id: str, units: Units, has_subscriptions: bool, now: datetime
) -> None:
    conn.execute(
        update(pools)
        .where(pools.c.tenant_id == tenant_id, pools.c.plan_id == plan_id)
        .values(
            enabled=units.enabled,
            warning=units.warning,
            suspended=units.suspended,
            has_subscriptions=has_subscriptions,
            updated_at=now,
        )
    )


_COUNTER_OF_STATE = {
    ACTIVE: "seated_active",
    WARNING: "seated_warning",
    SUSPENDED: "seated_suspended",
    ERROR: "waiting",
    DISABLED: "disabled",
}


def apply_state_deltas(
    conn: Connection,
    tenant_id: str,
    plan_id: str,
    transitions: Iterable[tuple[str | None, str | None, int]],
    now: datetime,
) -> None:
    deltas: dict[str, int] = {}
    for old, new, n in transitions:
        if old in _COUNTER_OF_STATE:
            deltas[_COUNTER_OF_STATE[old]] = deltas.get(_COUNTER_OF_STATE[old], 0) - n
        if new in _COUNTER_OF_STATE:
            deltas[_COUNTER_OF_STATE[new]] = deltas.get(_COUNTER_OF_STATE[new], 0) + n
    values = {col: pools.c[col] + d for col, d in deltas.items() if d}
    if values:
        conn.execute(
            update(pools)
            .where(pools.c.tenant_id == tenant_id, pools.c.plan_id == plan_id)
            .values(updated_at=now, **values)
        )


# ---------------------------------------------------------------- reservations


def reserve(
    conn: Connection, tenant_id: str, plan_id: str, job_id: str, accepted_at: datetime, seats: int
) -> None:
    """Promise seats to a queued job. A job that absorbed a duplicate keeps one reservation per plan,
    the larger of the two (a merged job's users are the same users)."""
    if seats <= 0:
        return
    r = seat_reservations
    existing = conn.execute(
        select(r.c.id, r.c.seats).where(
            r.c.tenant_id == tenant_id, r.c.job_id == job_id, r.c.plan_id == plan_id
        )
    ).first()
    if existing is not None:
        extra = seats - existing.seats
        if extra <= 0:
            return
        conn.execute(update(r).where(r.c.tenant_id == tenant_id, r.c.id == existing.id).values(seats=seats))
    else:
        extra = seats
        conn.execute(
            insert(r).values(
                tenant_id=tenant_id,
                id=str(uuid.uuid4()),
                job_id=job_id,
                plan_id=plan_id,
                accepted_at=accepted_at,
                seats=seats,
            )
        )
    conn.execute(
        update(pools)
        .where(pools.c.tenant_id == tenant_id, pools.c.plan_id == plan_id)
        .values(reserved=pools.c.reserved + extra)
    )


def release(conn: Connection, tenant_id: str, plan_id: str, job_ids: Sequence[str]) -> datetime | None:
    """Drop the reservations of finished jobs; answer the earliest accepted_at released (seating must be
    recomputed from there), or None."""
    r = seat_reservations
    cond = and_(r.c.tenant_id == tenant_id, r.c.plan_id == plan_id, r.c.job_id.in_(list(job_ids)))
    row = conn.execute(select(func.min(r.c.accepted_at), func.sum(r.c.seats)).where(cond)).one()
    if row[1] is None:
        return None
    conn.execute(delete(r).where(cond))
    conn.execute(
        update(pools)
        .where(pools.c.tenant_id == tenant_id, pools.c.plan_id == plan_id)
        .values(reserved=pools.c.reserved - int(row[1]))
    )
    return _as_datetime(row[0])


def reservations(conn: Connection, tenant_id: str, plan_id: str) -> list[tuple[datetime, int]]:
    r = seat_reservations
    return [
        (_as_datetime(a), int(s))
        for a, s in conn.execute(
            select(r.c.accepted_at, r.c.seats).where(r.c.tenant_id == tenant_id, r.c.plan_id == plan_id)
        )
    ]


def plans_with_reservations_for_jobs(conn: Connection, tenant_id: str, job_ids: Sequence[str]) -> list[str]:
    r = seat_reservations
    return list(
        conn.execute(
            select(r.c.plan_id).where(r.c.tenant_id == tenant_id, r.c.job_id.in_(list(job_ids))).distinct()
        ).scalars()
    )


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, str):  # SQLite answers aggregates of DATETIME columns as text
        return datetime.fromisoformat(value)
    return value


# ---------------------------------------------------------------- assignments


def direct_user_ids(conn: Connection, tenant_id: str, plan_id: str, user_ids: Sequence[str]) -> set[str]:
    d = direct_assignments
    out: set[str] = set()
    for i in range(0, len(user_ids), 500):
        out.update(
            conn.execute(
                select(d.c.user_id).where(
                    d.c.tenant_id == tenant_id,
                    d.c.plan_id == plan_id,
                    d.c.user_id.in_(list(user_ids[i : i + 500])),
                )
            ).scalars()
        )
    return out


def direct_assignment(conn: Connection, tenant_id: str, plan_id: str, user_id: str) -> Any:
    d = direct_assignments
    return conn.execute(
        select(d).where(d.c.tenant_id == tenant_id, d.c.plan_id == plan_id, d.c.user_id == user_id)
    ).first()


def insert_direct(
    conn: Connection,
    tenant_id: str,
    plan_id: str,
    user_ids: Sequence[str],
    at: datetime,
    *,
    claim_key: str | None = None,
) -> None:
    """Direct assignments granted at `at`; `claim_key` (a reassignment's) is the place in claim order among
    equal claim times that they take over (None: each user's own id)."""
    if user_ids:
        conn.execute(
            insert(direct_assignments),
            [
                {
                    "tenant_id": tenant_id,
                    "plan_id": plan_id,
                    "user_id": u,
                    "assigned_at": at,
                    "claim_key": claim_key,
                }
                for u in user_ids
            ],
        )


def delete_direct(conn: Connection, tenant_id: str, plan_id: str, user_ids: Sequence[str]) -> None:
    d = direct_assignments
    for i in range(0, len(user_ids), 500):
        conn.execute(
            delete(d).where(
                d.c.tenant_id == tenant_id,
                d.c.plan_id == plan_id,
                d.c.user_id.in_(list(user_ids[i : i + 500])),
            )
        )


def user_direct_plans(conn: Connection, tenant_id: str, user_id: str) -> list[str]:
    d = direct_assignments
    return list(
        conn.execute(select(d.c.plan_id).where(d.c.tenant_id == tenant_id, d.c.user_id == user_id)).scalars()
    )


def group_assignment(conn: Connection, tenant_id: str, plan_id: str, group_id: str) -> Any:
    g = group_assignments
    return conn.execute(
        select(g).where(g.c.tenant_id == tenant_id, g.c.plan_id == plan_id, g.c.group_id == group_id)
    ).first()


def insert_group_assignment(
    conn: Connection, tenant_id: str, plan_id: str, group_id: str, at: datetime
) -> None:
    conn.execute(
        insert(group_assignments).values(
            tenant_id=tenant_id, plan_id=plan_id, group_id=group_id, assigned_at=at, processing_state="Queued"
        )
    )


def delete_group_assignment(conn: Connection, tenant_id: str, plan_id: str, group_id: str) -> None:
    g = group_assignments
    conn.execute(
        delete(g).where(g.c.tenant_id == tenant_id, g.c.plan_id == plan_id, g.c.group_id == group_id)
    )


def group_plans(conn: Connection, tenant_id: str, group_id: str) -> list[Any]:
    g = group_assignments
    return list(
        conn.execute(
            select(g).where(g.c.tenant_id == tenant_id, g.c.group_id == group_id).order_by(g.c.plan_id)
        )
    )


def set_processing_state(
    conn: Connection, tenant_id: str, group_ids: Sequence[str], state: str, plan_id: str | None = None
) -> None:
    g = group_assignments
    ids = sorted(set(group_ids))
    for i in range(0, len(ids), 500):
        cond = and_(g.c.tenant_id == tenant_id, g.c.group_id.in_(ids[i : i + 500]))
        if plan_id is not None:
            cond = and_(cond, g.c.plan_id == plan_id)
        if conn.dialect.name == "postgresql":
            # rows locked in one order by every writer: two membership changes under common ancestors,
            # each updating the same rows in the order it met them, deadlocked (the scale-out test)
            conn.execute(
                select(g.c.group_id)
                .where(cond)
                .order_by(g.c.group_id, g.c.plan_id)
                .with_for_update(key_share=False)
            )
        conn.execute(update(g).where(cond).values(processing_state=state))


def assigned_groups_among(conn: Connection, tenant_id: str, group_ids: Sequence[str]) -> list[Any]:
    """Group assignments (any plan) on any of the given groups."""
    g = group_assignments
    out: list[Any] = []
    for i in range(0, len(group_ids), 500):
        out.extend(
            conn.execute(
                select(g.c.plan_id, g.c.group_id).where(
                    g.c.tenant_id == tenant_id, g.c.group_id.in_(list(group_ids[i : i + 500]))
                )
            )
        )
    return out


def group_assignments_page(
    conn: Connection, tenant_id: str, plan_id: str, after: str | None, limit: int
) -> list[Any]:
    g = group_assignments
    stmt = (
        select(g, groups.c.display_name)
        .join(groups, and_(groups.c.tenant_id == g.c.tenant_id, groups.c.id == g.c.group_id))
        .where(g.c.tenant_id == tenant_id, g.c.plan_id == plan_id)
        .order_by(g.c.group_id)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(g.c.group_id > after)
    return list(conn.execute(stmt))


def recount_group_status(
    conn: Connection,
    tenant_id: str,
    group_ids: Sequence[str],
    now: datetime,
    *,
    complete: bool,
    plan_id: str | None = None,
) -> None:
    """Count members of each group assignment on these groups afresh (after membership changes)."""
    g = group_assignments
    c = group_closure
    m = group_user_members
    lic = licenses
    for assigned_plan, group_id in assigned_groups_among(conn, tenant_id, group_ids):
        if plan_id is not None and assigned_plan != plan_id:
            continue
        members = (
            select(m.c.user_id)
            .join(c, and_(c.c.tenant_id == m.c.tenant_id, c.c.descendant_id == m.c.group_id))
            .where(c.c.tenant_id == tenant_id, c.c.ancestor_id == group_id)
            .distinct()
            .subquery()
        )
        counts = (
            select(
                func.count(),
                func.count(case((lic.c.state.in_(SEATED), 1))),
                func.count(case((lic.c.state == ERROR, 1))),
            )
            .select_from(members)
            .outerjoin(
                lic,
                and_(
                    lic.c.tenant_id == tenant_id,
                    lic.c.plan_id == assigned_plan,
                    lic.c.user_id == members.c.user_id,
                ),
            )
        )
        big = conn.dialect.name == "postgresql" and (
            conn.execute(select(func.count()).select_from(members)).scalar_one() > LARGE_BATCH
        )
        # members just added (a SCIM PATCH of thousands) have no statistics yet: the planner expects a
        # handful and loops over the plan's licenses per member (n x n); a large group is hash-joined
        with no_nested_loops(conn, when=big):
            row = conn.execute(counts).one()
        values: dict[str, Any] = {
            "members_total": row[0],
            "members_seated": row[1],
            "members_with_errors": row[2],
        }
        if complete:
            values.update(processing_state="Complete", last_processed_at=now)
        conn.execute(
            update(g)
            .where(g.c.tenant_id == tenant_id, g.c.plan_id == assigned_plan, g.c.group_id == group_id)
            .values(**values)
        )


# ---------------------------------------------------------------- licenses (reads)


def license_row(conn: Connection, tenant_id: str, plan_id: str, user_id: str) -> Any:
    lic = licenses
    return conn.execute(
        select(lic).where(lic.c.tenant_id == tenant_id, lic.c.plan_id == plan_id, lic.c.user_id == user_id)
    ).first()


def user_licenses(conn: Connection, tenant_id: str, user_id: str) -> list[Any]:
    lic = licenses
    return list(
        conn.execute(
            select(lic).where(lic.c.tenant_id == tenant_id, lic.c.user_id == user_id).order_by(lic.c.plan_id)
        )
    )


def user_group_sources(
    conn: Connection, tenant_id: str, user_id: str, plan_id: str | None = None
) -> list[Any]:
    """(plan_id, group_id, display_name) of every group assignment that reaches the user.

    Small queries driven by the user (their groups, those groups' ancestors, the assignments on them): as
    one join, a planner without statistics may start from the closure's other end, which at a million
    users is thousands of times the work."""
    c = group_closure
    m = group_user_members
    g = group_assignments
    if conn.dialect.name == "postgresql":  # PostgreSQL plans the one join well (its statistics are kept)
        stmt = (
            select(g.c.plan_id, g.c.group_id, groups.c.display_name)
            .select_from(m)
            .join(c, and_(c.c.tenant_id == m.c.tenant_id, c.c.descendant_id == m.c.group_id))
            .join(g, and_(g.c.tenant_id == c.c.tenant_id, g.c.group_id == c.c.ancestor_id))
            .join(groups, and_(groups.c.tenant_id == g.c.tenant_id, groups.c.id == g.c.group_id))
            .where(m.c.tenant_id == tenant_id, m.c.user_id == user_id)
            .distinct()
            .order_by(g.c.plan_id, groups.c.display_name, g.c.group_id)
        )
        if plan_id is not None:
            stmt = stmt.where(g.c.plan_id == plan_id)
        return list(conn.execute(stmt))
    direct = list(
        conn.execute(select(m.c.group_id).where(m.c.tenant_id == tenant_id, m.c.user_id == user_id)).scalars()
    )
    if not direct:
        return []
    ancestors = sorted(
        set(
            conn.execute(
                select(c.c.ancestor_id).where(c.c.tenant_id == tenant_id, c.c.descendant_id.in_(direct))
            ).scalars()
        )
    )
    if not ancestors:
        return []
    out: list[Any] = []
    for i in range(0, len(ancestors), 500):
        stmt = (
            select(g.c.plan_id, g.c.group_id, groups.c.display_name)
            .join(groups, and_(groups.c.tenant_id == g.c.tenant_id, groups.c.id == g.c.group_id))
            .where(g.c.tenant_id == tenant_id, g.c.group_id.in_(ancestors[i : i + 500]))
        )
        if plan_id is not None:
            stmt = stmt.where(g.c.plan_id == plan_id)
        out.extend(conn.execute(stmt))
    return sorted(out, key=lambda r: (r.plan_id, r.display_name, r.group_id))


def licensed_users_page(
    conn: Connection,
    tenant_id: str,
    plan_id: str,
    *,
    state: str | None,
    source: str | None,
    idle_before: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Any]:
    """Licenses of a plan in claim order, with the user's name.

    Read a state at a time from ix_licenses_state, whose (claim_at, user_id) tail is this order, and merged:
    each state's page is an index range that stops after `limit` rows, where one query over every state
    would sort all of the plan's licenses (tens of thousands at a million users) for every page."""
    if state is not None:
        return _licensed_users_of_state(conn, tenant_id, plan_id, state, source, idle_before, after, limit)
    rows = [
        row
        for one_state in STATES
        for row in _licensed_users_of_state(
            conn, tenant_id, plan_id, one_state, source, idle_before, after, limit
        )
    ]
    return sorted(rows, key=lambda r: (r.claim_at, r.user_id))[:limit]


def _licensed_users_of_state(
    conn: Connection,
    tenant_id: str,
    plan_id: str,
    state: str,
    source: str | None,
    idle_before: datetime | None,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Any]:
    lic = licenses
    stmt = (
        select(lic, users.c.user_principal_name, users.c.display_name)
        .join(users, and_(users.c.tenant_id == lic.c.tenant_id, users.c.id == lic.c.user_id))
        .where(lic.c.tenant_id == tenant_id, lic.c.plan_id == plan_id, lic.c.state == state)
        .order_by(lic.c.claim_at, lic.c.user_id)
        .limit(limit)
    )
    if source == "direct":
        stmt = stmt.where(lic.c.direct.is_(True))
    elif source == "group":
        stmt = stmt.where(lic.c.via_group.is_(True))
    if idle_before is not None:
        stmt = stmt.where(or_(lic.c.last_used_at.is_(None), lic.c.last_used_at < idle_before))
    if after is not None:
        stmt = stmt.where(tuple_(lic.c.claim_at, lic.c.user_id) > tuple_(*after))
    return list(conn.execute(stmt))


def users_group_sources(
    conn: Connection, tenant_id: str, user_ids: Sequence[str], plan_id: str
) -> dict[str, list[Any]]:
    """user_group_sources of one plan for a page of users at once, in three small queries whatever the page's
    size (their groups, those groups' ancestors, the plan's assignments on them): a list of licensed users
    shows every holder's groups, and a query per user made such a page cost a hundred and fifty."""
    c = group_closure
    m = group_user_members
    g = group_assignments
    out: dict[str, list[Any]] = {u: [] for u in user_ids}
    if not user_ids:
        return out
    direct: dict[str, set[str]] = {}
    for i in range(0, len(user_ids), 500):
        for user_id, group_id in conn.execute(
            select(m.c.user_id, m.c.group_id).where(
                m.c.tenant_id == tenant_id, m.c.user_id.in_(list(user_ids[i : i + 500]))
            )
        ):
            direct.setdefault(user_id, set()).add(group_id)
    groups_of_users = sorted({gid for gids in direct.values() for gid in gids})
    ancestors: dict[str, set[str]] = {}
    for i in range(0, len(groups_of_users), 500):
        for descendant, ancestor in conn.execute(
            select(c.c.descendant_id, c.c.ancestor_id).where(
                c.c.tenant_id == tenant_id, c.c.descendant_id.in_(groups_of_users[i : i + 500])
            )
        ):
            ancestors.setdefault(descendant, set()).add(ancestor)
    every_ancestor = sorted({a for found in ancestors.values() for a in found})
    assigned: dict[str, Any] = {}
    for i in range(0, len(every_ancestor), 500):
        for row in conn.execute(
            select(g.c.plan_id, g.c.group_id, groups.c.display_name)
            .join(groups, and_(groups.c.tenant_id == g.c.tenant_id, groups.c.id == g.c.group_id))
            .where(
                g.c.tenant_id == tenant_id,
                g.c.plan_id == plan_id,
                g.c.group_id.in_(every_ancestor[i : i + 500]),
            )
        ):
            assigned[row.group_id] = row
    for user_id, gids in direct.items():
        reached = {a for gid in gids for a in ancestors.get(gid, ())}
        rows = [assigned[a] for a in reached if a in assigned]
        out[user_id] = sorted(rows, key=lambda r: (r.plan_id, r.display_name, r.group_id))
    return out


def states_of(conn: Connection, tenant_id: str, plan_id: str, user_ids: Sequence[str]) -> dict[str, str]:
    lic = licenses
    out: dict[str, str] = {}
    for i in range(0, len(user_ids), 500):
        out.update(
            (r.user_id, r.state)
            for r in conn.execute(
                select(lic.c.user_id, lic.c.state).where(
                    lic.c.tenant_id == tenant_id,
                    lic.c.plan_id == plan_id,
                    lic.c.user_id.in_(list(user_ids[i : i + 500])),
                )
            )
        )
    return out


# ---------------------------------------------------------------- the scope of a recomputation

LARGE_BATCH = 1000


def refresh_statistics(conn: Connection, rows: int, *tables: Any) -> None:
    """On PostgreSQL, after a set-based statement filled a table with many rows in this transaction, let the
    planner know: it still believes the table is as small as before, and plans the next statements as
    nested loops over what are now thousands of rows (n x n). Cheap next to the work it saves."""
    if conn.dialect.name == "postgresql" and rows > LARGE_BATCH:
        for table in tables:
            conn.exec_driver_sql(f"ANALYZE {table.name}")


def scope_is_empty(conn: Connection, tenant_id: str, batch_id: str) -> bool:
    return (
        conn.execute(
            select(literal(1))
            .where(work_scope.c.tenant_id == tenant_id, work_scope.c.batch_id == batch_id)
            .limit(1)
        ).first()
        is None
    )


def new_batch() -> str:
    return str(uuid.uuid4())


def scope_users(conn: Connection, tenant_id: str, batch_id: str, user_ids: Iterable[str]) -> None:
    rows = [{"tenant_id": tenant_id, "batch_id": batch_id, "user_id": u} for u in dict.fromkeys(user_ids)]
    if rows:
        ins = insert_for(conn, work_scope).on_conflict_do_nothing(
            index_elements=["tenant_id", "batch_id", "user_id"]
        )
        conn.execute(ins, rows)


def scope_from(conn: Connection, tenant_id: str, batch_id: str, user_ids: Any) -> None:
    """Add the users of a SELECT of user ids to the scope (each once, however often it names them)."""
    sub = user_ids.distinct().subquery()
    # (the WHERE keeps SQLite from reading ON CONFLICT as a join's ON)
    rows = select(literal(tenant_id), literal(batch_id), sub.c.user_id).where(true())
    # ON CONFLICT, not NOT EXISTS: an anti-join against the table being filled was planned (with no
    # statistics for rows just written) as a walk over the batch's growing index per row: n x n
    ins = (
        insert_for(conn, work_scope)
        .from_select(["tenant_id", "batch_id", "user_id"], rows)
        .on_conflict_do_nothing(index_elements=["tenant_id", "batch_id", "user_id"])
    )
    result = conn.execute(ins)
    refresh_statistics(conn, result.rowcount or 0, work_scope)


def scope_plans(conn: Connection, tenant_id: str, batch_id: str) -> list[str]:
    """Every plan a user in the scope holds now or has a source of."""
    s = work_scope
    lic = licenses
    d = direct_assignments
    m = group_user_members
    c = group_closure
    g = group_assignments
    in_scope = and_(s.c.tenant_id == tenant_id, s.c.batch_id == batch_id)
    held = (
        select(lic.c.plan_id)
        .join(s, and_(s.c.tenant_id == lic.c.tenant_id, s.c.user_id == lic.c.user_id))
        .where(in_scope, lic.c.tenant_id == tenant_id)
    )
    direct = (
        select(d.c.plan_id)
        .join(s, and_(s.c.tenant_id == d.c.tenant_id, s.c.user_id == d.c.user_id))
        .where(in_scope, d.c.tenant_id == tenant_id)
    )
    via = (
        select(g.c.plan_id)
        .select_from(s)
        .join(m, and_(m.c.tenant_id == s.c.tenant_id, m.c.user_id == s.c.user_id))
        .join(c, and_(c.c.tenant_id == m.c.tenant_id, c.c.descendant_id == m.c.group_id))
        .join(g, and_(g.c.tenant_id == c.c.tenant_id, g.c.group_id == c.c.ancestor_id))
        .where(in_scope)
    )
    q = union_all(held, direct, via).subquery()
    return sorted(set(conn.execute(select(q.c.plan_id).distinct()).scalars()))


def clear_batch(conn: Connection, tenant_id: str, batch_id: str, *, keep_scope: bool = False) -> None:
    for t in (
        (work_desired, work_seat_changes) if keep_scope else (work_scope, work_desired, work_seat_changes)
    ):
        conn.execute(delete(t).where(t.c.tenant_id == tenant_id, t.c.batch_id == batch_id))


def unscope_users(conn: Connection, tenant_id: str, batch_id: str, user_ids: Sequence[str]) -> set[str]:
    """Take these users out of the scope; answers those of them that were in it."""
    if not user_ids:
        return set()
    s = work_scope
    in_batch = and_(s.c.tenant_id == tenant_id, s.c.batch_id == batch_id, s.c.user_id.in_(list(user_ids)))
    found = set(conn.execute(select(s.c.user_id).where(in_batch)).scalars())
    if found:
        conn.execute(delete(s).where(in_batch))
    return found


def count_needing_seat(conn: Connection, tenant_id: str, plan_id: str, batch_id: str) -> int:
    """Active users of the scope who do not hold a seat of the plan (SPEC: needed)."""
    s = work_scope
    lic = licenses
    u = users
    seated = exists().where(
        lic.c.tenant_id == tenant_id,
        lic.c.plan_id == plan_id,
        lic.c.user_id == s.c.user_id,
        lic.c.state.in_(list(SEATED)),
    )
    return conn.execute(
        select(func.count())
        .select_from(s)
        .join(u, and_(u.c.tenant_id == s.c.tenant_id, u.c.id == s.c.user_id))
        .where(s.c.tenant_id == tenant_id, s.c.batch_id == batch_id, u.c.active.is_(True), ~seated)
    ).scalar_one()


def _pending_claims(tenant_id: str, plan_id: str, user_col: Any, before: datetime | None = None) -> Any:
    """(user_id, claim time) of the active users of `user_col` who have a group source of the plan but no
    license row yet (their group's work is queued), with the claim time that work will give them; only
    sources granted before `before` when given."""
    m = group_user_members
    c = group_closure
    g = group_assignments
    u = users
    lic = licenses
    granted = func.min(greatest(g.c.assigned_at, m.c.added_at, c.c.joined_at))
    q = (
        select(u.c.id.label("user_id"), greatest(granted, u.c.activated_at).label("claim_at"))
        .select_from(u)
        .join(m, and_(m.c.tenant_id == u.c.tenant_id, m.c.user_id == u.c.id))
        .join(c, and_(c.c.tenant_id == m.c.tenant_id, c.c.descendant_id == m.c.group_id))
        .join(
            g, and_(g.c.tenant_id == c.c.tenant_id, g.c.group_id == c.c.ancestor_id, g.c.plan_id == plan_id)
        )
        .where(
            u.c.tenant_id == tenant_id,
            u.c.id.in_(user_col),
            u.c.active.is_(True),
            ~exists().where(lic.c.tenant_id == tenant_id, lic.c.plan_id == plan_id, lic.c.user_id == u.c.id),
        )
        .group_by(u.c.id, u.c.activated_at)
    )
    if before is not None:
        q = q.where(g.c.assigned_at < before, m.c.added_at < before, c.c.joined_at < before)
    return q


def pending_group_claims(
    conn: Connection, tenant_id: str, plan_id: str, user_ids: Sequence[str]
) -> dict[str, datetime]:
    """Of these users, those whose group work is queued: each one's claim time as that work will give it."""
    if not user_ids:
        return {}
    rows = conn.execute(_pending_claims(tenant_id, plan_id, list(user_ids))).all()
    return {r.user_id: _as_datetime(r.claim_at) for r in rows}


def pending_claims_in_scope(
    conn: Connection, tenant_id: str, plan_id: str, batch_id: str
) -> dict[datetime, int]:
    """How many users of the scope have a claim through queued group work, per claim time."""
    s = work_scope
    scope = select(s.c.user_id).where(s.c.tenant_id == tenant_id, s.c.batch_id == batch_id)
    pending = _pending_claims(tenant_id, plan_id, scope).subquery()
    rows = conn.execute(select(pending.c.claim_at, func.count()).group_by(pending.c.claim_at)).all()
    return {_as_datetime(at): int(n) for at, n in rows}


def unscope_pending(conn: Connection, tenant_id: str, plan_id: str, batch_id: str, before: datetime) -> None:
    """Take out of the scope the users with a claim through group work queued before `before`: the seats
    they need are that work's (reserved then), not the new work's."""
    s = work_scope
    scope = select(s.c.user_id).where(s.c.tenant_id == tenant_id, s.c.batch_id == batch_id)
    pending = _pending_claims(tenant_id, plan_id, scope, before).subquery()
    conn.execute(
        delete(s).where(
            s.c.tenant_id == tenant_id, s.c.batch_id == batch_id, s.c.user_id.in_(select(pending.c.user_id))
        )
    )


def take_reserved_seats(
    conn: Connection, tenant_id: str, plan_id: str, accepted_at: datetime, seats: int
) -> None:
    """Seats of the reservations accepted at `accepted_at` taken now by users the queued work would have
    seated (they were named directly before it ran): the reservations and the pool's count shrink."""
    r = seat_reservations
    rows = conn.execute(
        select(r.c.id, r.c.seats)
        .where(
            r.c.tenant_id == tenant_id, r.c.plan_id == plan_id, r.c.accepted_at == accepted_at, r.c.seats > 0
        )
        .order_by(r.c.id)
    ).all()
    taken = 0
    for row in rows:
        n = min(row.seats, seats - taken)
        if n <= 0:
            break
        conn.execute(
            update(r).where(r.c.tenant_id == tenant_id, r.c.id == row.id).values(seats=r.c.seats - n)
        )
        taken += n
    if taken:
        conn.execute(
            update(pools)
            .where(pools.c.tenant_id == tenant_id, pools.c.plan_id == plan_id)
            .values(reserved=pools.c.reserved - taken)
        )


# ---------------------------------------------------------------- recomputation

# the columns of a license row, in the order the recomputation's INSERT ... SELECTs produce them
LICENSE_COLUMNS = [
    "tenant_id",
    "plan_id",
    "user_id",
    "claim_at",
    "claim_key",
    "direct",
    "via_group",
    "active",
    "state",
    "created_at",
    "updated_at",
]


def recompute_scope(
    conn: Connection, tenant_id: str, plan_id: str, batch_id: str, now: datetime
) -> tuple[datetime, str] | None:
    """Bring the license rows of the scope's users for one plan in line with their sources.

    Removed licenses are recorded in work_seat_changes (new_state NULL) and deleted; changed ones are
    updated; new ones stay in work_desired until `reseat` inserts them with their seated state (written
    once, never inserted and then updated). Answers the smallest claim key whose order may have changed
    (seating must be recomputed from there), or None when nothing changed."""
    s = work_scope
    dsr = work_desired
    lic = licenses
    d = direct_assignments
    m = group_user_members
    c = group_closure
    g = group_assignments
    u = users
    in_scope = and_(s.c.tenant_id == tenant_id, s.c.batch_id == batch_id)

    direct_src = (
        select(
            d.c.user_id,
            d.c.assigned_at.label("granted"),
            literal(1).label("is_direct"),
            literal(0).label("is_group"),
            d.c.claim_key.label("claim_key"),
        )
        .join(s, and_(s.c.tenant_id == d.c.tenant_id, s.c.user_id == d.c.user_id))
        .where(in_scope, d.c.tenant_id == tenant_id, d.c.plan_id == plan_id)
    )
    group_src = (
        select(
            m.c.user_id,
            greatest(g.c.assigned_at, m.c.added_at, c.c.joined_at).label("granted"),
            literal(0).label("is_direct"),
            literal(1).label("is_group"),
            null().label("claim_key"),
        )
        .select_from(s)
        .join(m, and_(m.c.tenant_id == s.c.tenant_id, m.c.user_id == s.c.user_id))
        .join(c, and_(c.c.tenant_id == m.c.tenant_id, c.c.descendant_id == m.c.group_id))
        .join(
            g, and_(g.c.tenant_id == c.c.tenant_id, g.c.group_id == c.c.ancestor_id, g.c.plan_id == plan_id)
        )
        .where(in_scope)
    )
    src = union_all(direct_src, group_src).subquery()
    desired_rows = (
        select(
            literal(tenant_id),
            literal(batch_id),
            src.c.user_id,
            # claim time: the oldest source's grant, but never before the user was last (re)activated
            greatest(func.min(src.c.granted), u.c.activated_at),
            # the tie-break among equal claim times: the direct assignment's carried key, else the user's id
            func.coalesce(func.max(src.c.claim_key), src.c.user_id),
            func.max(src.c.is_direct) == 1,
            func.max(src.c.is_group) == 1,
            u.c.active,
        )
        .select_from(src)
        .join(u, and_(u.c.tenant_id == tenant_id, u.c.id == src.c.user_id))
        .group_by(src.c.user_id, u.c.active, u.c.activated_at)
    )
    desired_count = conn.execute(
        insert(dsr).from_select(
            ["tenant_id", "batch_id", "user_id", "claim_at", "claim_key", "direct", "via_group", "active"],
            desired_rows,
        )
    ).rowcount
    refresh_statistics(conn, desired_count or 0, dsr)

    same = and_(
        dsr.c.tenant_id == tenant_id,
        dsr.c.batch_id == batch_id,
        dsr.c.user_id == lic.c.user_id,
        dsr.c.claim_at == lic.c.claim_at,
        dsr.c.claim_key == lic.c.claim_key,
        dsr.c.direct == lic.c.direct,
        dsr.c.via_group == lic.c.via_group,
        dsr.c.active == lic.c.active,
    )
    old_keys = (
        select(lic.c.claim_at, lic.c.claim_key)
        .join(s, and_(s.c.tenant_id == lic.c.tenant_id, s.c.user_id == lic.c.user_id))
        .where(in_scope, lic.c.tenant_id == tenant_id, lic.c.plan_id == plan_id, ~exists().where(same))
    )
    lic2 = licenses.alias("l2")
    new_keys = select(dsr.c.claim_at, dsr.c.claim_key).where(
        dsr.c.tenant_id == tenant_id,
        dsr.c.batch_id == batch_id,
        ~exists().where(
            lic2.c.tenant_id == tenant_id,
            lic2.c.plan_id == plan_id,
            lic2.c.user_id == dsr.c.user_id,
            lic2.c.claim_at == dsr.c.claim_at,
            lic2.c.claim_key == dsr.c.claim_key,
            lic2.c.direct == dsr.c.direct,
            lic2.c.via_group == dsr.c.via_group,
            lic2.c.active == dsr.c.active,
        ),
    )
    keys = union_all(old_keys, new_keys).subquery()
    first = conn.execute(
        select(keys.c.claim_at, keys.c.claim_key).order_by(keys.c.claim_at, keys.c.claim_key).limit(1)
    ).first()
    if first is None:
        return None

    # licenses that lost every source
    gone = (
        select(literal(tenant_id), literal(batch_id), lic.c.user_id, lic.c.state, null())
        .join(s, and_(s.c.tenant_id == lic.c.tenant_id, s.c.user_id == lic.c.user_id))
        .where(
            in_scope,
            lic.c.tenant_id == tenant_id,
            lic.c.plan_id == plan_id,
            ~exists().where(
                dsr.c.tenant_id == tenant_id, dsr.c.batch_id == batch_id, dsr.c.user_id == lic.c.user_id
            ),
        )
    )
    wsc = work_seat_changes
    conn.execute(
        insert(wsc).from_select(["tenant_id", "batch_id", "user_id", "old_state", "new_state"], gone)
    )
    conn.execute(
        delete(lic).where(
            lic.c.tenant_id == tenant_id,
            lic.c.plan_id == plan_id,
            lic.c.user_id.in_(
                select(wsc.c.user_id).where(wsc.c.tenant_id == tenant_id, wsc.c.batch_id == batch_id)
            ),
        )
    )

    # changed licenses (the new ones are inserted by reseat, with their state): an upsert that only ever
    # takes its update branch, because it is the one multi-column UPDATE from a SELECT both databases share
    held = licenses.alias("held")
    upsert_rows = select(
        literal(tenant_id),
        literal(plan_id),
        dsr.c.user_id,
        dsr.c.claim_at,
        dsr.c.claim_key,
        dsr.c.direct,
        dsr.c.via_group,
        dsr.c.active,
        literal(NEW),
        literal(now, lic.c.created_at.type),
        literal(now, lic.c.updated_at.type),
    ).where(
        dsr.c.tenant_id == tenant_id,
        dsr.c.batch_id == batch_id,
        exists().where(
            held.c.tenant_id == tenant_id, held.c.plan_id == plan_id, held.c.user_id == dsr.c.user_id
        ),
    )
    ins = insert_for(conn, lic).from_select(
        LICENSE_COLUMNS,
        upsert_rows,
    )
    ex = ins.excluded
    ins = ins.on_conflict_do_update(
        index_elements=["tenant_id", "plan_id", "user_id"],
        set_={
            "claim_at": ex.claim_at,
            "claim_key": ex.claim_key,
            "direct": ex.direct,
            "via_group": ex.via_group,
            "active": ex.active,
            "updated_at": ex.updated_at,
        },
        where=or_(
            lic.c.claim_at != ex.claim_at,
            lic.c.claim_key != ex.claim_key,
            lic.c.direct != ex.direct,
            lic.c.via_group != ex.via_group,
            lic.c.active != ex.active,
        ),
    )
    conn.execute(ins)
    return (_as_datetime(first.claim_at), first.claim_key)


def reseat(
    conn: Connection,
    tenant_id: str,
    plan_id: str,
    batch_id: str,
    units: Units,
    since: tuple[datetime, str],
    now: datetime,
) -> list[tuple[str | None, str | None, int]]:
    """Apply the seating rule to the holders whose claim key is >= since (those before keep their rank and
    state), recording each change in work_seat_changes and applying it. Answers (old, new, count) of the
    changes, including removals recorded by recompute_scope."""
    lic = licenses
    wsc = work_seat_changes
    dsr = work_desired
    s = work_scope
    r = seat_reservations
    since_key = (literal(since[0], lic.c.claim_at.type), literal(since[1]))
    key_from = tuple_(lic.c.claim_at, lic.c.claim_key) >= tuple_(*since_key)
    base = conn.execute(
        select(func.count())
        .select_from(lic)
        .where(lic.c.tenant_id == tenant_id, lic.c.plan_id == plan_id, lic.c.active.is_(True), ~key_from)
    ).scalar_one()
    # the holders to rank: the license rows from `since` on, and the batch's new licenses, which are not
    # rows yet (recompute_scope left them in work_desired; every one of them has a key >= since)
    held = licenses.alias("held")
    is_new = and_(
        dsr.c.tenant_id == tenant_id,
        dsr.c.batch_id == batch_id,
        ~exists().where(
            held.c.tenant_id == tenant_id, held.c.plan_id == plan_id, held.c.user_id == dsr.c.user_id
        ),
    )
    holders = union_all(
        select(lic.c.user_id, lic.c.claim_at, lic.c.claim_key, lic.c.state).where(
            lic.c.tenant_id == tenant_id, lic.c.plan_id == plan_id, lic.c.active.is_(True), key_from
        ),
        select(dsr.c.user_id, dsr.c.claim_at, dsr.c.claim_key, literal(NEW).label("state")).where(
            is_new, dsr.c.active.is_(True)
        ),
    ).subquery()
    rank = (
        func.row_number().over(order_by=(holders.c.claim_at, holders.c.claim_key, holders.c.user_id)) + base
    )
    has_reservations = conn.execute(
        select(literal(1)).where(r.c.tenant_id == tenant_id, r.c.plan_id == plan_id).limit(1)
    ).first()
    if has_reservations:
        reserved_before = (
            select(func.coalesce(func.sum(r.c.seats), 0))
            .where(r.c.tenant_id == tenant_id, r.c.plan_id == plan_id, r.c.accepted_at < holders.c.claim_at)
            .scalar_subquery()
        )
        rank = rank + reserved_before
    ranked = select(holders.c.user_id, holders.c.state, rank.label("rank")).subquery()
    active_end, warning_end, suspended_end = band_limits(units)
    new_state = case(
        (ranked.c.rank <= active_end, literal(ACTIVE)),
        (ranked.c.rank <= warning_end, literal(WARNING)),
        (ranked.c.rank <= suspended_end, literal(SUSPENDED)),
        else_=literal(ERROR),
    )
    decided = select(ranked.c.user_id, ranked.c.state, new_state.label("new_state")).subquery()
    changes = select(
        literal(tenant_id),
        literal(batch_id),
        decided.c.user_id,
        case((decided.c.state == NEW, null()), else_=decided.c.state),
        decided.c.new_state,
    ).where(decided.c.state != decided.c.new_state)
    cols = ["tenant_id", "batch_id", "user_id", "old_state", "new_state"]
    changed = conn.execute(insert(wsc).from_select(cols, changes)).rowcount
    # inactive users of the scope hold no seat: their rows, and their new licenses, are Disabled
    disabled = (
        select(literal(tenant_id), literal(batch_id), lic.c.user_id, lic.c.state, literal(DISABLED))
        .join(s, and_(s.c.tenant_id == lic.c.tenant_id, s.c.user_id == lic.c.user_id))
        .where(
            s.c.tenant_id == tenant_id,
            s.c.batch_id == batch_id,
            lic.c.tenant_id == tenant_id,
            lic.c.plan_id == plan_id,
            lic.c.active.is_(False),
            lic.c.state != DISABLED,
        )
    )
    new_disabled = select(
        literal(tenant_id), literal(batch_id), dsr.c.user_id, null(), literal(DISABLED)
    ).where(is_new, dsr.c.active.is_(False))
    changed = (changed or 0) + (
        conn.execute(insert(wsc).from_select(cols, union_all(disabled, new_disabled))).rowcount or 0
    )
    refresh_statistics(conn, changed, wsc)

    # the new licenses, written once with their state (old_state NULL and a new state: a new license)
    new_rows = (
        select(
            literal(tenant_id),
            literal(plan_id),
            dsr.c.user_id,
            dsr.c.claim_at,
            dsr.c.claim_key,
            dsr.c.direct,
            dsr.c.via_group,
            dsr.c.active,
            wsc.c.new_state,
            literal(now, lic.c.created_at.type),
            literal(now, lic.c.updated_at.type),
        )
        .select_from(dsr)
        .join(
            wsc,
            and_(
                wsc.c.tenant_id == dsr.c.tenant_id,
                wsc.c.batch_id == dsr.c.batch_id,
                wsc.c.user_id == dsr.c.user_id,
            ),
        )
        .where(
            dsr.c.tenant_id == tenant_id,
            dsr.c.batch_id == batch_id,
            wsc.c.old_state.is_(None),
            wsc.c.new_state.is_not(None),
        )
    )
    pg = conn.dialect.name == "postgresql"
    # a hash join: the estimates of rows this very transaction wrote make a loop look cheap (n x n)
    with no_nested_loops(conn):
        inserted = conn.execute(
            insert(lic).from_select(
                LICENSE_COLUMNS,
                new_rows,
            )
        ).rowcount
    refresh_statistics(conn, inserted or 0, lic)

    # the existing licenses whose state changed
    in_batch = and_(wsc.c.tenant_id == tenant_id, wsc.c.batch_id == batch_id)
    existing_changed = and_(wsc.c.old_state.is_not(None), wsc.c.new_state.is_not(None))
    if pg:
        # a join: PostgreSQL runs the correlated form below as a loop over the batch per license; and a
        # hash join even when its estimates (rows written by this very transaction) say a loop is cheaper
        with no_nested_loops(conn):
            conn.execute(
                update(lic)
                .where(
                    lic.c.tenant_id == tenant_id,
                    lic.c.plan_id == plan_id,
                    wsc.c.tenant_id == tenant_id,
                    wsc.c.batch_id == batch_id,
                    wsc.c.user_id == lic.c.user_id,
                    existing_changed,
                )
                .values(state=wsc.c.new_state, updated_at=now)
            )
    else:
        conn.execute(
            update(lic)
            .where(
                lic.c.tenant_id == tenant_id,
                lic.c.plan_id == plan_id,
                lic.c.user_id.in_(select(wsc.c.user_id).where(in_batch, existing_changed)),
            )
            .values(
                state=select(wsc.c.new_state)
                .where(in_batch, wsc.c.user_id == lic.c.user_id)
                .scalar_subquery(),
                updated_at=now,
            )
        )
    return [
        (old, new, int(n))
        for old, new, n in conn.execute(
            select(wsc.c.old_state, wsc.c.new_state, func.count())
            .where(in_batch)
            .group_by(wsc.c.old_state, wsc.c.new_state)
        )
    ]


def apply_group_status_deltas(conn: Connection, tenant_id: str, plan_id: str, batch_id: str) -> None:
    """Keep members_seated / members_with_errors of the plan's group assignments in step with the seat
    changes of this batch (a member's state changes when seats move, whatever the cause)."""
    wsc = work_seat_changes
    m = group_user_members
    c = group_closure
    g = group_assignments
    pairs = (
        select(
            wsc.c.user_id,
            g.c.group_id,
            wsc.c.old_state,
            wsc.c.new_state,
        )
        .select_from(wsc)
        .join(m, and_(m.c.tenant_id == wsc.c.tenant_id, m.c.user_id == wsc.c.user_id))
        .join(c, and_(c.c.tenant_id == m.c.tenant_id, c.c.descendant_id == m.c.group_id))
        .join(
            g, and_(g.c.tenant_id == c.c.tenant_id, g.c.group_id == c.c.ancestor_id, g.c.plan_id == plan_id)
        )
        .where(wsc.c.tenant_id == tenant_id, wsc.c.batch_id == batch_id)
        .distinct()
        .subquery()
    )

    def flag(col: Any, states: Sequence[str]) -> Any:
        return case((col.in_(list(states)), 1), else_=0)

    rows = conn.execute(
        select(
            pairs.c.group_id,
            func.sum(flag(pairs.c.new_state, SEATED) - flag(pairs.c.old_state, SEATED)),
            func.sum(flag(pairs.c.new_state, (ERROR,)) - flag(pairs.c.old_state, (ERROR,))),
        ).group_by(pairs.c.group_id)
    ).all()
    for group_id, seated, errors in rows:
        if seated or errors:
            conn.execute(
                update(g)
                .where(g.c.tenant_id == tenant_id, g.c.plan_id == plan_id, g.c.group_id == group_id)
                .values(
                    members_seated=g.c.members_seated + int(seated),
                    members_with_errors=g.c.members_with_errors + int(errors),
                )
            )


def seat_change_events(
    tenant_id: str,
    plan_id: str,
    batch_id: str,
    at: datetime,
    actor: tuple[str, str | None, str | None],
    request_id: str | None,
) -> Any:
    """A SELECT of audit event rows: one per user whose license appeared, went, or changed state in the
    batch."""
    wsc = work_seat_changes
    old, new = wsc.c.old_state, wsc.c.new_state
    seated = list(SEATED)
    action = case(
        (old.is_(None), literal("license.granted")),
        (new.is_(None), literal("license.revoked")),
        (and_(old.in_(seated), new == ERROR), literal("license.seat_lost")),
        (and_(old.in_([ERROR, DISABLED]), new.in_(seated)), literal("license.seated")),
        else_=literal("license.state_changed"),
    )

    def js(col: Any) -> Any:
        return case((col.is_(None), literal("null")), else_=literal('"') + col + literal('"'))

    details = literal('{"from":') + js(old) + literal(',"to":') + js(new) + literal("}")
    return (
        select(
            literal(tenant_id),
            new_uuid(),
            literal(at, users.c.created_at.type),
            literal(actor[0]),
            literal(actor[1]),
            literal(actor[2]),
            action,
            literal("user"),
            wsc.c.user_id,
            users.c.user_principal_name,
            literal(plan_id),
            details,
            literal(request_id),
        )
        .select_from(wsc)
        .join(users, and_(users.c.tenant_id == wsc.c.tenant_id, users.c.id == wsc.c.user_id))
        .where(wsc.c.tenant_id == tenant_id, wsc.c.batch_id == batch_id)
    )


# ---------------------------------------------------------------- jobs

from licensedesk.db.schema import job_users, jobs  # noqa: E402


def enqueue_job(
    conn: Connection,
    tenant_id: str,
    kind: str,
    target_id: str,
    now: datetime,
    *,
    plan_id: str = "",
    user_ids: Sequence[str] = (),
) -> str:
    """Queue a job; a queued job of the same kind, target and plan absorbs a duplicate. Answers the id of
    the job that will do the work."""
    job_id = str(uuid.uuid4())
    values = {
        "tenant_id": tenant_id,
        "id": job_id,
        "kind": kind,
        "target_id": target_id,
        "plan_id": plan_id,
        "state": "queued",
        "attempts": 0,
        "run_after": now,
        "created_at": now,
    }
    if kind == "users":
        conn.execute(insert(jobs).values(**values))
    else:
        ins = (
            insert_for(conn, jobs)
            .values(**values)
            .on_conflict_do_nothing(
                index_elements=["tenant_id", "kind", "target_id", "plan_id"],
                # literal SQL: as bound parameters, a prepared statement no longer matches the partial index
                index_where=text("state = 'queued' AND kind != 'users'"),
            )
            .returning(jobs.c.id)
        )
        if conn.execute(ins).first() is None:  # a queued duplicate absorbs this one
            return str(
                conn.execute(
                    select(jobs.c.id).where(
                        jobs.c.tenant_id == tenant_id,
                        jobs.c.kind == kind,
                        jobs.c.target_id == target_id,
                        jobs.c.plan_id == plan_id,
                        jobs.c.state == "queued",
                    )
                ).scalar_one()
            )
    if user_ids:
        conn.execute(
            insert(job_users),
            [{"tenant_id": tenant_id, "job_id": job_id, "user_id": u} for u in dict.fromkeys(user_ids)],
        )
    return job_id


def enqueue_users_from(conn: Connection, tenant_id: str, target_id: str, user_ids: Any, now: datetime) -> str:
    """Queue a 'users' job whose users are the result of a SELECT of user ids."""
    job_id = enqueue_job(conn, tenant_id, "users", target_id, now)
    enqueue_users_from_into(conn, tenant_id, job_id, user_ids)
    return job_id


def enqueue_users_from_into(conn: Connection, tenant_id: str, job_id: str, user_ids: Any) -> None:
    """Add the users of a SELECT of user ids to a queued 'users' job."""
    sub = user_ids.distinct().subquery()
    rows = select(literal(tenant_id), literal(job_id), sub.c.user_id).where(true())  # see scope_from
    conn.execute(
        insert_for(conn, job_users)
        .from_select(["tenant_id", "job_id", "user_id"], rows)
        .on_conflict_do_nothing(index_elements=["tenant_id", "job_id", "user_id"])
    )


def claim_jobs(conn: Connection, now: datetime, lease_until: datetime, token: str, batch: int) -> list[Any]:
    """Lease the oldest due job, and with a 'users' job up to `batch` more of the same tenant.
    Jobs whose lease has run out (a worker died) are due again."""
    due = or_(
        and_(jobs.c.state == "queued", jobs.c.run_after <= now),
        and_(jobs.c.state == "running", jobs.c.lease_until < now),
    )
    stmt = select(jobs).where(due).order_by(jobs.c.run_after, jobs.c.created_at).limit(1)
    pg = conn.dialect.name == "postgresql"
    if pg:
        stmt = stmt.with_for_update(skip_locked=True)
    first = conn.execute(stmt).first()
    if first is None:
        return []
    claimed = [first]
    if first.kind == "users" and batch > 1:
        more = (
            select(jobs)
            .where(due, jobs.c.tenant_id == first.tenant_id, jobs.c.kind == "users", jobs.c.id != first.id)
            .order_by(jobs.c.run_after, jobs.c.created_at)
            .limit(batch - 1)
        )
        if pg:
            more = more.with_for_update(skip_locked=True)
        claimed.extend(conn.execute(more))
    ids = [j.id for j in claimed]
    conn.execute(
        update(jobs)
        .where(jobs.c.tenant_id == first.tenant_id, jobs.c.id.in_(ids))
        .values(state="running", lease_until=lease_until, lease_token=token, attempts=jobs.c.attempts + 1)
    )
    return claimed


def jobs_still_leased(conn: Connection, tenant_id: str, job_ids: Sequence[str], token: str) -> bool:
    """Whether this worker still holds the jobs; their rows stay locked until the processing transaction
    ends (PostgreSQL), so that a job running longer than its lease (a million-member fan-out) is not
    taken over and redone by another worker meanwhile (claims skip locked rows). A worker that dies
    releases them with its transaction; its jobs are taken over once their lease ran out."""
    held = conn.execute(
        select(jobs.c.id)
        .where(
            jobs.c.tenant_id == tenant_id,
            jobs.c.id.in_(list(job_ids)),
            jobs.c.lease_token == token,
            jobs.c.state == "running",
        )
        .with_for_update()
    ).all()
    return len(held) == len(job_ids)


def finish_jobs(conn: Connection, tenant_id: str, job_ids: Sequence[str]) -> None:
    ids = list(job_ids)
    conn.execute(delete(job_users).where(job_users.c.tenant_id == tenant_id, job_users.c.job_id.in_(ids)))
    conn.execute(delete(jobs).where(jobs.c.tenant_id == tenant_id, jobs.c.id.in_(ids)))


def fail_jobs(
    conn: Connection, tenant_id: str, job_ids: Sequence[str], token: str, error: str, retry_at: datetime
) -> None:
    """Queue failed jobs again for a later try. A failed job that a newer queued duplicate already covers
    hands its reservations over to it and goes."""
    for job in conn.execute(
        select(jobs).where(
            jobs.c.tenant_id == tenant_id, jobs.c.id.in_(list(job_ids)), jobs.c.lease_token == token
        )
    ).all():
        duplicate = None
        if job.kind != "users":
            duplicate = conn.execute(
                select(jobs.c.id).where(
                    jobs.c.tenant_id == tenant_id,
                    jobs.c.kind == job.kind,
                    jobs.c.target_id == job.target_id,
                    jobs.c.plan_id == job.plan_id,
                    jobs.c.state == "queued",
                )
            ).scalar()
        if duplicate is not None:
            conn.execute(
                update(seat_reservations)
                .where(seat_reservations.c.tenant_id == tenant_id, seat_reservations.c.job_id == job.id)
                .values(job_id=duplicate)
            )
            finish_jobs(conn, tenant_id, [job.id])
            continue
        conn.execute(
            update(jobs)
            .where(jobs.c.tenant_id == tenant_id, jobs.c.id == job.id)
            .values(
                state="queued",
                run_after=retry_at,
                lease_until=None,
                lease_token=None,
                last_error=error[:2000],
            )
        )


def job_user_ids_select(tenant_id: str, job_ids: Sequence[str]) -> Any:
    return select(job_users.c.user_id).where(
        job_users.c.tenant_id == tenant_id, job_users.c.job_id.in_(list(job_ids))
    )


def queue_depth(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(jobs)).scalar_one()


def pending_jobs(conn: Connection, tenant_id: str) -> int:
    return conn.execute(
        select(func.count()).select_from(jobs).where(jobs.c.tenant_id == tenant_id)
    ).scalar_one()


def move_direct_assignments(conn: Connection, tenant_id: str, old_plan: str, new_plan: str) -> list[str]:
    """Move direct assignments to another plan (a user who has both keeps the older grant)."""
    d = direct_assignments
    rows = conn.execute(
        select(d.c.user_id, d.c.assigned_at, d.c.claim_key).where(
            d.c.tenant_id == tenant_id, d.c.plan_id == old_plan
        )
    ).all()
    if not rows:
        return []
    existing = direct_user_ids(conn, tenant_id, new_plan, [r.user_id for r in rows])
    insert_rows = [r for r in rows if r.user_id not in existing]
    if insert_rows:
        conn.execute(
            insert(d),
            [
                {
                    "tenant_id": tenant_id,
                    "plan_id": new_plan,
                    "user_id": r.user_id,
                    "assigned_at": r.assigned_at,
                    "claim_key": r.claim_key,
                }
                for r in insert_rows
            ],
        )
    conn.execute(delete(d).where(d.c.tenant_id == tenant_id, d.c.plan_id == old_plan))
    return [r.user_id for r in rows]


def move_group_assignments(conn: Connection, tenant_id: str, old_plan: str, new_plan: str) -> list[str]:
    g = group_assignments
    rows = conn.execute(
        select(g.c.group_id, g.c.assigned_at).where(g.c.tenant_id == tenant_id, g.c.plan_id == old_plan)
    ).all()
    for r in rows:
        if group_assignment(conn, tenant_id, new_plan, r.group_id) is None:
            conn.execute(
                insert(g).values(
                    tenant_id=tenant_id,
                    plan_id=new_plan,
                    group_id=r.group_id,
                    assigned_at=r.assigned_at,
                    processing_state="Queued",
                )
            )
    conn.execute(delete(g).where(g.c.tenant_id == tenant_id, g.c.plan_id == old_plan))
    return [r.group_id for r in rows]
