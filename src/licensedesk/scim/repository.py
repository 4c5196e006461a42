"""The SCIM queries: searches (filtered, counted, sorted and paged in SQL), the members of groups with
their names, and the SCIM-only attributes. Every query takes tenant_id first."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from scim2_models.path import CompareOperator
from sqlalchemy import Connection, and_, delete, exists, func, insert, literal, select, union_all, update
from sqlalchemy.sql.elements import ColumnElement

from licensedesk.db.schema import (
    group_group_members,
    group_user_members,
    groups,
    scim_group_attributes,
    scim_user_attributes,
    users,
)
from licensedesk.scim.filters import Attributes, Column, Membership


def _members_of_group(tenant_id: str, group_id_expr: Any) -> Membership:
    def has(op: CompareOperator, value: str) -> ColumnElement[bool]:
        m = group_user_members
        e = group_group_members
        return exists().where(
            m.c.tenant_id == tenant_id, m.c.group_id == group_id_expr, m.c.user_id == value
        ) | (
            exists().where(
                e.c.tenant_id == tenant_id, e.c.group_id == group_id_expr, e.c.member_group_id == value
            )
        )

    def any_value() -> ColumnElement[bool]:
        m = group_user_members
        e = group_group_members
        return exists().where(m.c.tenant_id == tenant_id, m.c.group_id == group_id_expr) | exists().where(
            e.c.tenant_id == tenant_id, e.c.group_id == group_id_expr
        )

    return Membership(has, any_value)


def _groups_of_user(tenant_id: str, user_id_expr: Any) -> Membership:
    m = group_user_members

    def has(op: CompareOperator, value: str) -> ColumnElement[bool]:
        return exists().where(m.c.tenant_id == tenant_id, m.c.user_id == user_id_expr, m.c.group_id == value)

    def any_value() -> ColumnElement[bool]:
        return exists().where(m.c.tenant_id == tenant_id, m.c.user_id == user_id_expr)

    return Membership(has, any_value)


def user_attributes(tenant_id: str) -> Attributes:
    u = users
    return {
        "id": Column(u.c.id, "exact"),
        "username": Column(u.c.upn_key, "text"),
        "displayname": Column(u.c.display_name, "text"),
        "externalid": Column(u.c.external_id, "exact", nullable=True),
        "active": Column(u.c.active, "bool"),
        "meta.created": Column(u.c.created_at, "time"),
        "meta.lastmodified": Column(u.c.updated_at, "time"),
        "groups.value": _groups_of_user(tenant_id, u.c.id),
    }


def group_attributes(tenant_id: str) -> Attributes:
    g = groups
    return {
        "id": Column(g.c.id, "exact"),
        "displayname": Column(g.c.display_name, "text"),
        "externalid": Column(g.c.external_id, "exact", nullable=True),
        "meta.created": Column(g.c.created_at, "time"),
        "meta.lastmodified": Column(g.c.updated_at, "time"),
        "members.value": _members_of_group(tenant_id, g.c.id),
    }


USER_SORT = {
    "id": users.c.id,
    "username": users.c.upn_key,
    "displayname": users.c.display_name,
    "externalid": users.c.external_id,
    "active": users.c.active,
    "meta.created": users.c.created_at,
    "meta.lastmodified": users.c.updated_at,
}
GROUP_SORT = {
    "id": groups.c.id,
    "displayname": groups.c.name_key,
    "externalid": groups.c.external_id,
    "meta.created": groups.c.created_at,
    "meta.lastmodified": groups.c.updated_at,
}


def _search(
    conn: Connection,
    table: Any,
    extra: Any,
    extra_key: Any,
    tenant_id: str,
    condition: ColumnElement[bool],
    order: Sequence[Any],
    offset: int,
    limit: int | None,
) -> tuple[int, list[Any]]:
    where = and_(table.c.tenant_id == tenant_id, condition)
    total = conn.execute(select(func.count()).select_from(table).where(where)).scalar_one()
    if limit == 0 or offset >= total:
        return total, []
    stmt = (
        select(table, extra.c.data.label("scim_data"))
        .select_from(
            table.outerjoin(extra, and_(extra.c.tenant_id == table.c.tenant_id, extra_key == table.c.id))
        )
        .where(where)
        .order_by(*order, table.c.id)
        .offset(offset)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return total, list(conn.execute(stmt))


def search_users(
    conn: Connection,
    tenant_id: str,
    condition: ColumnElement[bool],
    order: Sequence[Any],
    offset: int,
    limit: int | None,
) -> tuple[int, list[Any]]:
    x = scim_user_attributes
    return _search(conn, users, x, x.c.user_id, tenant_id, condition, order, offset, limit)


def search_groups(
    conn: Connection,
    tenant_id: str,
    condition: ColumnElement[bool],
    order: Sequence[Any],
    offset: int,
    limit: int | None,
) -> tuple[int, list[Any]]:
    x = scim_group_attributes
    return _search(conn, groups, x, x.c.group_id, tenant_id, condition, order, offset, limit)


def user(conn: Connection, tenant_id: str, user_id: str, *, lock: bool = False) -> Any:
    x = scim_user_attributes
    stmt = (
        select(users, x.c.data.label("scim_data"))
        .select_from(users.outerjoin(x, and_(x.c.tenant_id == users.c.tenant_id, x.c.user_id == users.c.id)))
        .where(users.c.tenant_id == tenant_id, users.c.id == user_id)
    )
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=users)
    return conn.execute(stmt).first()


def group(conn: Connection, tenant_id: str, group_id: str, *, lock: bool = False) -> Any:
    x = scim_group_attributes
    stmt = (
        select(groups, x.c.data.label("scim_data"))
        .select_from(
            groups.outerjoin(x, and_(x.c.tenant_id == groups.c.tenant_id, x.c.group_id == groups.c.id))
        )
        .where(groups.c.tenant_id == tenant_id, groups.c.id == group_id)
    )
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=groups)
    return conn.execute(stmt).first()


def members(
    conn: Connection, tenant_id: str, group_ids: Sequence[str]
) -> dict[str, list[tuple[str, str, str]]]:
    """The direct members of groups: {group id: [(kind, id, display name)]}, groups first, then by id."""
    out: dict[str, list[tuple[str, str, str]]] = {g: [] for g in group_ids}
    m = group_user_members
    e = group_group_members
    g2 = groups.alias("member_group")
    for i in range(0, len(group_ids), 500):
        chunk = list(group_ids[i : i + 500])
        q = union_all(
            select(
                e.c.group_id,
                literal("group").label("kind"),
                e.c.member_group_id.label("id"),
                g2.c.display_name.label("display"),
            )
            .join(g2, and_(g2.c.tenant_id == e.c.tenant_id, g2.c.id == e.c.member_group_id))
            .where(e.c.tenant_id == tenant_id, e.c.group_id.in_(chunk)),
            select(
                m.c.group_id,
                literal("user").label("kind"),
                m.c.user_id.label("id"),
                func.coalesce(func.nullif(users.c.display_name, ""), users.c.user_principal_name).label(
                    "display"
                ),
            )
            .join(users, and_(users.c.tenant_id == m.c.tenant_id, users.c.id == m.c.user_id))
            .where(m.c.tenant_id == tenant_id, m.c.group_id.in_(chunk)),
        ).subquery()
        for row in conn.execute(select(q).order_by(q.c.group_id, q.c.kind, q.c.id)):
            out[row.group_id].append((row.kind, row.id, row.display))
    return out


def user_groups(
    conn: Connection, tenant_id: str, user_ids: Sequence[str]
) -> dict[str, list[tuple[str, str]]]:
    """The groups users are direct members of: {user id: [(group id, display name)]}."""
    out: dict[str, list[tuple[str, str]]] = {u: [] for u in user_ids}
    m = group_user_members
    for i in range(0, len(user_ids), 500):
        chunk = list(user_ids[i : i + 500])
        rows = conn.execute(
            select(m.c.user_id, groups.c.id, groups.c.display_name)
            .join(groups, and_(groups.c.tenant_id == m.c.tenant_id, groups.c.id == m.c.group_id))
            .where(m.c.tenant_id == tenant_id, m.c.user_id.in_(chunk))
            .order_by(m.c.user_id, groups.c.id)
        )
        for row in rows:
            out[row.user_id].append((row.id, row.display_name))
    return out


def group_ids_among(conn: Connection, tenant_id: str, ids: Sequence[str]) -> set[str]:
    """Which of these ids name a group of the tenant."""
    out: set[str] = set()
    for i in range(0, len(ids), 500):
        chunk = list(ids[i : i + 500])
        out.update(
            conn.execute(
                select(groups.c.id).where(groups.c.tenant_id == tenant_id, groups.c.id.in_(chunk))
            ).scalars()
        )
    return out


def encode(data: dict[str, Any] | None) -> str | None:
    return json.dumps(data, sort_keys=True, separators=(",", ":")) if data else None


def set_data(
    conn: Connection,
    kind: str,
    tenant_id: str,
    object_id: str,
    data: dict[str, Any] | None,
    *,
    new: bool = False,
) -> None:
    """Keep the SCIM-only attributes of a user or group (none: forget them). `new`: it has none yet."""
    table, key = (
        (scim_user_attributes, scim_user_attributes.c.user_id)
        if kind == "user"
        else (scim_group_attributes, scim_group_attributes.c.group_id)
    )
    text = encode(data)
    if text is None:
        if not new:
            conn.execute(delete(table).where(table.c.tenant_id == tenant_id, key == object_id))
        return
    if not new:
        done = conn.execute(
            update(table).where(table.c.tenant_id == tenant_id, key == object_id).values(data=text)
        )
        if done.rowcount:
            return
    conn.execute(insert(table).values({"tenant_id": tenant_id, key.name: object_id, "data": text}))
