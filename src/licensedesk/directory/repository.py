"""Every query of the directory: users, groups, memberships, the nesting closure and search terms.
Every query takes tenant_id first."""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    or_,
    select,
    true,
    tuple_,
    union_all,
    update,
)

from licensedesk.db.functions import greatest
from licensedesk.db.planner import custom_plans
from licensedesk.db.schema import (
    directory_terms,
    group_closure,
    group_group_members,
    group_user_members,
    groups,
    users,
)
from licensedesk.db.upsert import insert_for

EPOCH = datetime(1970, 1, 1)
KEYS_PER_STATEMENT = 2000  # ids bound in one IN list (SQLite allows 32,766 parameters)
TERM_MAX = "\U0010ffff"
_WORD = re.compile(r"[^\w]+", re.UNICODE)


def search_terms(*names: str) -> dict[str, int]:
    """The prefix-search terms of an object with their rank: each whole name lower-cased (rank 0), and
    every word of it (rank 1). A query matching a whole name ranks before one matching only a word."""
    terms: dict[str, int] = {}
    for name in names:
        low = name.lower().strip()
        if not low:
            continue
        for word in _WORD.split(low):
            if word:
                terms.setdefault(word[:400], 1)
        terms[low[:400]] = 0
    return terms


def replace_terms(conn: Connection, tenant_id: str, kind: str, object_id: str, terms: dict[str, int]) -> None:
    conn.execute(
        delete(directory_terms).where(
            directory_terms.c.tenant_id == tenant_id,
            directory_terms.c.kind == kind,
            directory_terms.c.object_id == object_id,
        )
    )
    rows = [
        {"tenant_id": tenant_id, "term": t, "rank": r, "kind": kind, "object_id": object_id}
        for t, r in sorted(terms.items())
    ]
    if rows:
        conn.execute(insert(directory_terms), rows)


def delete_terms(conn: Connection, tenant_id: str, kind: str, object_id: str) -> None:
    replace_terms(conn, tenant_id, kind, object_id, {})


# ---------------------------------------------------------------- users


def insert_user(conn: Connection, **values: Any) -> Any:
    """Insert a user; answers the stored row, or None when a unique value (userPrincipalName, externalId)
    is taken (nothing is inserted then, and the transaction goes on)."""
    stmt = _INSERT_USER.get(conn.dialect.name)
    if stmt is None:  # one statement object per dialect: SQLAlchemy compiles it once
        stmt = _INSERT_USER[conn.dialect.name] = (
            insert_for(conn, users).on_conflict_do_nothing().returning(*users.c)
        )
    return conn.execute(stmt, values).first()


_INSERT_USER: dict[str, Any] = {}


def update_user(conn: Connection, tenant_id: str, user_id: str, **values: Any) -> None:
    conn.execute(update(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id).values(**values))


def delete_user(conn: Connection, tenant_id: str, user_id: str) -> None:
    conn.execute(delete(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id))


def user(conn: Connection, tenant_id: str, user_id: str) -> Any:
    return conn.execute(select(users).where(users.c.tenant_id == tenant_id, users.c.id == user_id)).first()


def user_by_ref(conn: Connection, tenant_id: str, ref: str) -> Any:
    """A user by id or by userPrincipalName (case-insensitive)."""
    cond = users.c.upn_key == ref.lower() if "@" in ref else users.c.id == ref
    return conn.execute(select(users).where(users.c.tenant_id == tenant_id, cond)).first()


def user_by_upn(conn: Connection, tenant_id: str, upn: str) -> Any:
    return conn.execute(
        select(users).where(users.c.tenant_id == tenant_id, users.c.upn_key == upn.lower())
    ).first()


def user_by_external_id(conn: Connection, tenant_id: str, external_id: str) -> Any:
    return conn.execute(
        select(users).where(users.c.tenant_id == tenant_id, users.c.external_id == external_id)
    ).first()


def users_by_refs(conn: Connection, tenant_id: str, refs: Sequence[str]) -> dict[str, Any]:
    """Resolve many ids / userPrincipalNames at once: {ref: row}; unknown refs are absent."""
    out: dict[str, Any] = {}
    ids = [r for r in refs if "@" not in r]
    upns = [r.lower() for r in refs if "@" in r]
    for chunk_start in range(0, max(len(ids), len(upns)), 500):
        id_chunk = ids[chunk_start : chunk_start + 500]
        upn_chunk = upns[chunk_start : chunk_start + 500]
        conds = []
        if id_chunk:
            conds.append(users.c.id.in_(id_chunk))
        if upn_chunk:
            conds.append(users.c.upn_key.in_(upn_chunk))
        if not conds:
            continue
        for row in conn.execute(select(users).where(users.c.tenant_id == tenant_id, or_(*conds))):
            out[row.id] = row
            out[row.upn_key] = row
    return {
        r: out[r if "@" not in r else r.lower()] for r in refs if (r if "@" not in r else r.lower()) in out
    }


def users_by_external_ids(conn: Connection, tenant_id: str, external_ids: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(external_ids), 500):
        chunk = list(external_ids[i : i + 500])
        for row in conn.execute(
            select(users).where(users.c.tenant_id == tenant_id, users.c.external_id.in_(chunk))
        ):
            out[row.external_id] = row
    return out


def insert_users(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Many users in one statement (bulk import); their search terms go with insert_terms."""
    if rows:
        conn.execute(insert(users), list(rows))


def insert_terms(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        conn.execute(insert(directory_terms), list(rows))


def refresh_statistics(conn: Connection) -> None:
    """On PostgreSQL, tell the planner how large the directory has grown in this import: with the
    statistics of an empty table it looks up 500 users by a scan of them all (n x n over the import)."""
    if conn.dialect.name == "postgresql":
        for table in (users, group_user_members, directory_terms):
            conn.exec_driver_sql(f"ANALYZE {table.name}")


def users_page(conn: Connection, tenant_id: str, after_upn: str | None, limit: int) -> list[Any]:
    stmt = select(users).where(users.c.tenant_id == tenant_id).order_by(users.c.upn_key).limit(limit)
    if after_upn is not None:
        stmt = stmt.where(users.c.upn_key > after_upn)
    return list(conn.execute(stmt))


def count_users(conn: Connection, tenant_id: str) -> int:
    return conn.execute(
        select(func.count()).select_from(users).where(users.c.tenant_id == tenant_id)
    ).scalar_one()


# ---------------------------------------------------------------- search


def search(
    conn: Connection,
    tenant_id: str,
    q: str,
    kinds: Sequence[str],
    after: tuple[str, int, str, str] | None,
    limit: int,
) -> list[tuple[str, int, str, str]]:
    """(term, rank, kind, object_id) of objects with a term starting with q, each object once (at its
    first matching term), in index order: exact and shorter matches first, whole names before words.
    One kind walks the (kind, term) index, both kinds the (term) one: each in order, stopping at the limit."""
    t = directory_terms
    t2 = directory_terms.alias("t2")
    low = q.lower()
    # an object appears at its first matching term only, so pages never repeat it
    earlier = exists().where(
        t2.c.tenant_id == tenant_id,
        t2.c.object_id == t.c.object_id,
        t2.c.kind == t.c.kind,
        t2.c.term >= low,
        tuple_(t2.c.term, t2.c.rank) < tuple_(t.c.term, t.c.rank),
    )
    conds = [t.c.tenant_id == tenant_id, t.c.term >= low, t.c.term < low + TERM_MAX, ~earlier]
    order: tuple[Any, ...]
    if len(kinds) == 1:
        conds.append(t.c.kind == kinds[0])
        order = (t.c.term, t.c.rank, t.c.object_id)
        if after is not None:
            conds.append(tuple_(*order) > tuple_(after[0], after[1], after[3]))
    else:
        conds.append(t.c.kind.in_(list(kinds)))
        order = (t.c.term, t.c.rank, t.c.kind, t.c.object_id)
        if after is not None:
            conds.append(tuple_(*order) > tuple_(*after))
    stmt = select(t.c.term, t.c.rank, t.c.kind, t.c.object_id).where(*conds).order_by(*order).limit(limit)
    return [(r.term, r.rank, r.kind, r.object_id) for r in conn.execute(stmt)]


def users_by_ids(conn: Connection, tenant_id: str, ids: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(ids), 500):
        chunk = list(ids[i : i + 500])
        for row in conn.execute(select(users).where(users.c.tenant_id == tenant_id, users.c.id.in_(chunk))):
            out[row.id] = row
    return out


def groups_by_ids(conn: Connection, tenant_id: str, ids: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(ids), 500):
        chunk = list(ids[i : i + 500])
        for row in conn.execute(
            select(groups).where(groups.c.tenant_id == tenant_id, groups.c.id.in_(chunk))
        ):
            out[row.id] = row
    return out


# ---------------------------------------------------------------- groups


def insert_group(conn: Connection, **values: Any) -> None:
    conn.execute(insert(groups).values(**values))
    conn.execute(
        insert(group_closure).values(
            tenant_id=values["tenant_id"],
            ancestor_id=values["id"],
            descendant_id=values["id"],
            joined_at=EPOCH,
        )
    )


def update_group(conn: Connection, tenant_id: str, group_id: str, **values: Any) -> None:
    conn.execute(
        update(groups).where(groups.c.tenant_id == tenant_id, groups.c.id == group_id).values(**values)
    )


def delete_group(conn: Connection, tenant_id: str, group_id: str) -> None:
    conn.execute(
        delete(group_closure).where(
            group_closure.c.tenant_id == tenant_id,
            or_(group_closure.c.ancestor_id == group_id, group_closure.c.descendant_id == group_id),
        )
    )
    conn.execute(delete(groups).where(groups.c.tenant_id == tenant_id, groups.c.id == group_id))


def group(conn: Connection, tenant_id: str, group_id: str) -> Any:
    return conn.execute(
        select(groups).where(groups.c.tenant_id == tenant_id, groups.c.id == group_id)
    ).first()


def group_by_external_id(conn: Connection, tenant_id: str, external_id: str) -> Any:
    return conn.execute(
        select(groups).where(groups.c.tenant_id == tenant_id, groups.c.external_id == external_id)
    ).first()


def group_by_name(conn: Connection, tenant_id: str, display_name: str) -> Any:
    return conn.execute(
        select(groups)
        .where(groups.c.tenant_id == tenant_id, groups.c.name_key == display_name.lower())
        .order_by(groups.c.id)
        .limit(1)
    ).first()


def groups_page(conn: Connection, tenant_id: str, after: tuple[str, str] | None, limit: int) -> list[Any]:
    stmt = (
        select(groups)
        .where(groups.c.tenant_id == tenant_id)
        .order_by(groups.c.name_key, groups.c.id)
        .limit(limit)
    )
    if after is not None:
        stmt = stmt.where(tuple_(groups.c.name_key, groups.c.id) > tuple_(*after))
    return list(conn.execute(stmt))


# ---------------------------------------------------------------- memberships


def existing_user_members(
    conn: Connection, tenant_id: str, group_id: str, user_ids: Sequence[str]
) -> set[str]:
    found: set[str] = set()
    m = group_user_members
    for i in range(0, len(user_ids), 500):
        chunk = list(user_ids[i : i + 500])
        found.update(
            conn.execute(
                select(m.c.user_id).where(
                    m.c.tenant_id == tenant_id, m.c.group_id == group_id, m.c.user_id.in_(chunk)
                )
            ).scalars()
        )
    return found


def add_user_members(
    conn: Connection, tenant_id: str, group_id: str, user_ids: Sequence[str], at: datetime
) -> None:
    rows = [{"tenant_id": tenant_id, "group_id": group_id, "user_id": u, "added_at": at} for u in user_ids]
    if rows:
        conn.execute(insert(group_user_members), rows)


def remove_user_members(conn: Connection, tenant_id: str, group_id: str, user_ids: Sequence[str]) -> None:
    m = group_user_members
    for i in range(0, len(user_ids), 500):
        conn.execute(
            delete(m).where(
                m.c.tenant_id == tenant_id,
                m.c.group_id == group_id,
                m.c.user_id.in_(list(user_ids[i : i + 500])),
            )
        )


def has_group_member(conn: Connection, tenant_id: str, group_id: str, member_group_id: str) -> bool:
    e = group_group_members
    return (
        conn.execute(
            select(literal(1)).where(
                e.c.tenant_id == tenant_id, e.c.group_id == group_id, e.c.member_group_id == member_group_id
            )
        ).first()
        is not None
    )


def is_within(conn: Connection, tenant_id: str, ancestor_id: str, descendant_id: str) -> bool:
    """True when descendant is ancestor itself or nested in it at any depth."""
    c = group_closure
    return (
        conn.execute(
            select(literal(1)).where(
                c.c.tenant_id == tenant_id, c.c.ancestor_id == ancestor_id, c.c.descendant_id == descendant_id
            )
        ).first()
        is not None
    )


def add_group_member(conn: Connection, tenant_id: str, group_id: str, member_id: str, at: datetime) -> None:
    """Nest member in group, and extend the closure: every ancestor of group now reaches every descendant
    of member, joined at the latest edge on the path (keeping the earliest path when one existed)."""
    conn.execute(
        insert(group_group_members).values(
            tenant_id=tenant_id, group_id=group_id, member_group_id=member_id, added_at=at
        )
    )
    _connect(conn, tenant_id, group_id, member_id, at)


def _connect(
    conn: Connection,
    tenant_id: str,
    upper: str,
    lower: str,
    at: datetime,
    among: Sequence[str] | None = None,
) -> None:
    """Closure pairs for an edge upper -> lower: each ancestor of upper (only those in `among`, when
    given) reaches each descendant of lower, joined at the latest of (ancestor, upper), the edge and
    (lower, descendant); where a pair exists, the earlier stays.

    One statement, whose plan cannot go wrong whatever the planner's statistics say (PostgreSQL plans a
    tenant's closure from statistics gathered when it may have been a few rows; see remove_group_member):
    the descendants are read once into a materialized CTE, the ancestors once, and the two crossed, with
    no join condition between them to choose an index by. Custom plans, so a plan made while the closure
    was small is not kept for it as it grows."""
    c = group_closure
    a = c.alias("a")
    below = (
        select(c.c.descendant_id, c.c.joined_at)
        .where(c.c.tenant_id == tenant_id, c.c.ancestor_id == lower)
        .cte("below")
        .prefix_with("MATERIALIZED")
    )
    rows = (
        select(
            literal(tenant_id).label("tenant_id"),
            a.c.ancestor_id,
            below.c.descendant_id,
            greatest(a.c.joined_at, literal(at, c.c.joined_at.type), below.c.joined_at).label("joined_at"),
        )
        .select_from(a.join(below, true()))
        .where(a.c.tenant_id == tenant_id, a.c.descendant_id == upper)
    )
    if among is not None:
        rows = rows.where(a.c.ancestor_id.in_(list(among)))
    ins = insert_for(conn, c).from_select(["tenant_id", "ancestor_id", "descendant_id", "joined_at"], rows)
    ins = ins.on_conflict_do_update(
        index_elements=["tenant_id", "ancestor_id", "descendant_id"],
        set_={"joined_at": _earlier(ins.excluded.joined_at)},
    )
    with custom_plans(conn):
        conn.execute(ins)


def _earlier(new: Any) -> Any:
    return case((new < group_closure.c.joined_at, new), else_=group_closure.c.joined_at)


def remove_group_member(conn: Connection, tenant_id: str, group_id: str, member_id: str) -> None:
    """Un-nest member, and shrink the closure: delete the pairs that may have lost their path, put back
    those that have not.

    Only pairs (a, d) with a an ancestor of group and d a descendant of member can lose their path (the
    suspects); every other closure row stays exact. The suspects are deleted; then those still reachable
    are put back. A path from a to d that remains enters member's subtree by some other edge (x, y): x
    outside the subtree, y inside. Then (a, x) and (y, d) are not suspects (no group is both an ancestor of
    group and a descendant of member: that would be a cycle), so they are still in the closure, and

        (a, d) is reachable  iff  some closure (a, x), edge (x, y), closure (y, d) with x outside member's
                                  subtree and y inside it,

    joined at the minimum over those of the latest of the three, which is the minimum over the paths of
    their latest edge. So each edge into member's subtree (few; none in a tree) is connected again, for
    the ancestors of group only.

    Every statement is a lookup by keys the one before read (lists of groups: as long as the nesting is
    deep or wide, never as long as a group has members), so that no plan depends on the planner's idea of
    the closure's size: a join of the closure with itself, planned with statistics from before a large
    nesting was built, looped over every pair for each pair (minutes for a cut in a chain of 1,000)."""
    c = group_closure
    e = group_group_members
    conn.execute(
        delete(e).where(
            e.c.tenant_id == tenant_id, e.c.group_id == group_id, e.c.member_group_id == member_id
        )
    )
    above = ancestor_ids(conn, tenant_id, group_id)
    below = descendant_ids(conn, tenant_id, member_id)
    for i in range(0, len(above), KEYS_PER_STATEMENT):
        for j in range(0, len(below), KEYS_PER_STATEMENT):
            conn.execute(
                delete(c).where(
                    c.c.tenant_id == tenant_id,
                    c.c.ancestor_id.in_(above[i : i + KEYS_PER_STATEMENT]),
                    c.c.descendant_id.in_(below[j : j + KEYS_PER_STATEMENT]),
                )
            )
    inside = set(below)
    entries = []
    for j in range(0, len(below), KEYS_PER_STATEMENT):
        for edge in conn.execute(
            select(e.c.group_id, e.c.member_group_id, e.c.added_at).where(
                e.c.tenant_id == tenant_id, e.c.member_group_id.in_(below[j : j + KEYS_PER_STATEMENT])
            )
        ):
            if edge.group_id not in inside:
                entries.append(edge)
    for edge in entries:
        for i in range(0, len(above), KEYS_PER_STATEMENT):
            _connect(
                conn,
                tenant_id,
                edge.group_id,
                edge.member_group_id,
                edge.added_at,
                among=above[i : i + KEYS_PER_STATEMENT],
            )


def ancestor_ids(conn: Connection, tenant_id: str, group_id: str) -> list[str]:
    """The group itself and every group it is nested in, at any depth."""
    c = group_closure
    return list(
        conn.execute(
            select(c.c.ancestor_id).where(c.c.tenant_id == tenant_id, c.c.descendant_id == group_id)
        ).scalars()
    )


def descendant_ids(conn: Connection, tenant_id: str, group_id: str) -> list[str]:
    """The group itself and every group nested in it, at any depth."""
    c = group_closure
    return list(
        conn.execute(
            select(c.c.descendant_id).where(c.c.tenant_id == tenant_id, c.c.ancestor_id == group_id)
        ).scalars()
    )


def parent_ids(conn: Connection, tenant_id: str, group_id: str) -> list[str]:
    e = group_group_members
    return list(
        conn.execute(
            select(e.c.group_id).where(e.c.tenant_id == tenant_id, e.c.member_group_id == group_id)
        ).scalars()
    )


def transitive_user_ids_select(tenant_id: str, group_id: str) -> Any:
    """SELECT of the distinct users reachable through group (a subquery for set-based work)."""
    c = group_closure
    m = group_user_members
    return (
        select(m.c.user_id)
        .join(c, and_(c.c.tenant_id == m.c.tenant_id, c.c.descendant_id == m.c.group_id))
        .where(c.c.tenant_id == tenant_id, c.c.ancestor_id == group_id)
        .distinct()
    )


def count_transitive_users(conn: Connection, tenant_id: str, group_id: str) -> int:
    sub = transitive_user_ids_select(tenant_id, group_id).subquery()
    return conn.execute(select(func.count()).select_from(sub)).scalar_one()


def direct_members_page(
    conn: Connection, tenant_id: str, group_id: str, after: tuple[str, str] | None, limit: int
) -> list[tuple[str, str]]:
    """Direct members, users and groups, as (kind, id) ordered by (kind, id)."""
    m = group_user_members
    e = group_group_members
    q = union_all(
        select(literal("group").label("kind"), e.c.member_group_id.label("id")).where(
            e.c.tenant_id == tenant_id, e.c.group_id == group_id
        ),
        select(literal("user").label("kind"), m.c.user_id.label("id")).where(
            m.c.tenant_id == tenant_id, m.c.group_id == group_id
        ),
    ).subquery()
    stmt = select(q.c.kind, q.c.id).order_by(q.c.kind, q.c.id).limit(limit)
    if after is not None:
        stmt = stmt.where(tuple_(q.c.kind, q.c.id) > tuple_(*after))
    return [(r.kind, r.id) for r in conn.execute(stmt)]


def transitive_members_page(
    conn: Connection, tenant_id: str, group_id: str, after: tuple[str, str] | None, limit: int
) -> list[tuple[str, str]]:
    """Every user and nested group reachable through the group, as (kind, id) ordered by (kind, id)."""
    c = group_closure
    m = group_user_members
    nested = select(literal("group").label("kind"), c.c.descendant_id.label("id")).where(
        c.c.tenant_id == tenant_id, c.c.ancestor_id == group_id, c.c.descendant_id != group_id
    )
    members = (
        select(literal("user").label("kind"), m.c.user_id.label("id"))
        .join(c, and_(c.c.tenant_id == m.c.tenant_id, c.c.descendant_id == m.c.group_id))
        .where(c.c.tenant_id == tenant_id, c.c.ancestor_id == group_id)
        .distinct()
    )
    q = union_all(nested, members).subquery()
    stmt = select(q.c.kind, q.c.id).order_by(q.c.kind, q.c.id).limit(limit)
    if after is not None:
        stmt = stmt.where(tuple_(q.c.kind, q.c.id) > tuple_(*after))
    return [(r.kind, r.id) for r in conn.execute(stmt)]


def user_group_ids(conn: Connection, tenant_id: str, user_id: str, *, transitive: bool) -> list[str]:
    m = group_user_members
    direct = list(
        conn.execute(
            select(m.c.group_id)
            .where(m.c.tenant_id == tenant_id, m.c.user_id == user_id)
            .order_by(m.c.group_id)
        ).scalars()
    )
    if not transitive or not direct:
        return direct
    # two steps, driven by the user, whatever statistics the planner has
    c = group_closure
    return sorted(
        set(
            conn.execute(
                select(c.c.ancestor_id).where(c.c.tenant_id == tenant_id, c.c.descendant_id.in_(direct))
            ).scalars()
        )
    )
