"""The storage behind scim2-server: SCIM resources read from and written to the directory.

Every write goes through the directory service (its `..._in` functions, inside the one transaction of the
SCIM operation), so SCIM follows the API's rules: a new member of a licensed group is queued for seating,
a deactivated user frees the seat, and every change is audited with the `scim` actor.
Searches are translated to SQL (filters.py); nothing is filtered in Python.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from scim2_models import (
    ConflictException,
    InvalidValueException,
    NotFoundException,
    NotImplementedException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import ScimStorage, SearchPage
from sqlalchemy import Connection

from licensedesk.context import Context
from licensedesk.directory import service as directory
from licensedesk.errors import Conflict, DomainError, Duplicate, NotFound, ValidationFailed
from licensedesk.scim import repository as repo
from licensedesk.scim.filters import GROUP_SCHEMA, USER_SCHEMA, to_sql

# attributes licensedesk keeps in its own columns (or derives); the rest is kept as sent
ACTIVE_UNSET = "_activeUnset"  # in the kept JSON: the client removed `active`
MEMBER_DISPLAY = "_memberDisplay"  # in the kept JSON: {member id: display}, where the client named one
USER_OWN = {"id", "meta", "userName", "displayName", "externalId", "active", "groups", "password"}
GROUP_OWN = {"id", "meta", "displayName", "externalId", "members"}


def _utc(at: datetime) -> str:
    return at.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")


def _version(*parts: Any) -> str:
    digest = hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()
    return f'W/"{digest[:20]}"'


def user_version(row: Any) -> str:
    return _version(
        row.updated_at.isoformat(),
        row.user_principal_name,
        row.display_name,
        row.external_id,
        bool(row.active),
        row.scim_data,
    )


def group_version(row: Any) -> str:
    return _version(row.updated_at.isoformat(), row.display_name, row.external_id, row.scim_data)


def _wants(params: ResponseParameters[Any] | None, attribute: str) -> bool:
    """Whether a response keeps an attribute (so a group's members need not be loaded when excluded)."""
    if params is None:
        return True
    names = {str(a).rsplit(":", 1)[-1].split(".")[0].lower() for a in params.attributes or ()}
    excluded = {str(a).rsplit(":", 1)[-1].split(".")[0].lower() for a in params.excluded_attributes or ()}
    if attribute.lower() in excluded:
        return False
    return not names or attribute.lower() in names


def _scim_error(exc: DomainError) -> SCIMException:
    if isinstance(exc, Duplicate):
        return UniquenessException(detail=exc.detail)
    if isinstance(exc, NotFound):
        return NotFoundException(detail=exc.detail)
    if isinstance(exc, ValidationFailed):
        return InvalidValueException(detail=exc.detail)
    if isinstance(exc, Conflict):
        return ConflictException(detail=exc.detail)
    error = SCIMException(detail=exc.detail)
    error.status = exc.status
    return error


class DirectoryStorage(ScimStorage):
    """One tenant's users and groups, for one request (scim2-server calls it inside `operation()`)."""

    def __init__(self, ctx: Context, tenant_id: str, model_of: Any, *, write: bool) -> None:
        self.ctx = ctx
        self.tenant_id = tenant_id
        self.model_of = model_of  # ResourceType -> the pydantic model of its resources
        self.write = write
        self._conn: Connection | None = None

    @contextmanager
    def operation(self) -> Iterator[None]:
        try:
            with self.ctx.db.write() if self.write else self.ctx.db.read() as conn:
                self._conn = conn
                try:
                    yield
                finally:
                    self._conn = None
        except DomainError as exc:
            raise _scim_error(exc) from exc

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "scim2-server calls the storage inside operation()"
        return self._conn

    # ------------------------------------------------------------ reading

    def _user_resource(
        self, resource_type: ResourceType, row: Any, groups: list[tuple[str, str]] | None
    ) -> Any:
        data: dict[str, Any] = json.loads(row.scim_data) if row.scim_data else {}
        # `active` removed by the client: the user stays active (the default) and SCIM shows it unset
        unset = data.pop(ACTIVE_UNSET, False) and bool(row.active)
        data.setdefault("schemas", [USER_SCHEMA])
        if not unset:
            data["active"] = bool(row.active)
        data.update(
            id=row.id,
            userName=row.user_principal_name,
            meta={
                "resourceType": "User",
                "created": _utc(row.created_at),
                "lastModified": _utc(row.updated_at),
                "version": user_version(row),
            },
        )
        if row.display_name:
            data["displayName"] = row.display_name
        if row.external_id:
            data["externalId"] = row.external_id
        if groups:
            data["groups"] = [
                {"value": gid, "display": name, "$ref": f"Groups/{gid}", "type": "direct"}
                for gid, name in groups
            ]
        return self.model_of(resource_type).model_validate(data)

    def _group_resource(
        self, resource_type: ResourceType, row: Any, members: list[tuple[str, str, str]] | None
    ) -> Any:
        data: dict[str, Any] = json.loads(row.scim_data) if row.scim_data else {}
        displays: dict[str, str] = data.pop(MEMBER_DISPLAY, {})
        data.setdefault("schemas", [GROUP_SCHEMA])
        data.update(
            id=row.id,
            displayName=row.display_name,
            meta={
                "resourceType": "Group",
                "created": _utc(row.created_at),
                "lastModified": _utc(row.updated_at),
                "version": group_version(row),
            },
        )
        if row.external_id:
            data["externalId"] = row.external_id
        if members:
            data["members"] = [
                {
                    "value": mid,
                    "display": displays.get(mid) or name,
                    "type": "User" if kind == "user" else "Group",
                    "$ref": f"{'Users' if kind == 'user' else 'Groups'}/{mid}",
                }
                for kind, mid, name in members
            ]
        return self.model_of(resource_type).model_validate(data)

    def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        t = self.tenant_id
        if resource_type.id == "User":
            row = repo.user(self.conn, t, resource_id, lock=self.write)
            if row is None:
                raise NotFoundException(detail=f"user {resource_id} was not found")
            groups = (
                repo.user_groups(self.conn, t, [row.id])[row.id]
                if _wants(response_parameters, "groups")
                else None
            )
            return self._user_resource(resource_type, row, groups)
        row = repo.group(self.conn, t, resource_id, lock=self.write)
        if row is None:
            raise NotFoundException(detail=f"group {resource_id} was not found")
        members = (
            repo.members(self.conn, t, [row.id])[row.id] if _wants(response_parameters, "members") else None
        )
        return self._group_resource(resource_type, row, members)

    def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        if len(resource_types) != 1:
            raise NotImplementedException(detail="search one resource type at a time: /Users or /Groups")
        (resource_type,) = resource_types
        t = self.tenant_id
        node = search_request.filter.ast if search_request.filter is not None else None
        is_user = resource_type.id == "User"
        attributes = repo.user_attributes(t) if is_user else repo.group_attributes(t)
        condition = to_sql(node, attributes, USER_SCHEMA if is_user else GROUP_SCHEMA)
        order: list[Any] = []
        if search_request.sort_by is not None:
            name = str(search_request.sort_by).rsplit(":", 1)[-1].lower()
            column = (repo.USER_SORT if is_user else repo.GROUP_SORT).get(name)
            if column is None:
                raise InvalidValueException(detail=f"sorting by {search_request.sort_by} is not supported")
            descending = search_request.sort_order == SearchRequest.SortOrder.descending
            order.append(column.desc() if descending else column.asc())
        offset = search_request.start_index_0 or 0
        limit = search_request.count
        if is_user:
            total, rows = repo.search_users(self.conn, t, condition, order, offset, limit)
            groups = (
                repo.user_groups(self.conn, t, [r.id for r in rows])
                if _wants(search_request, "groups")
                else {}
            )
            found = [self._user_resource(resource_type, r, groups.get(r.id)) for r in rows]
        else:
            total, rows = repo.search_groups(self.conn, t, condition, order, offset, limit)
            members = (
                repo.members(self.conn, t, [r.id for r in rows]) if _wants(search_request, "members") else {}
            )
            found = [self._group_resource(resource_type, r, members.get(r.id)) for r in rows]
        return SearchPage(total, found)

    # ------------------------------------------------------------ writing

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        conn, t, ctx = self.conn, self.tenant_id, self.ctx
        data = resource.model_dump()
        if resource_type.id == "User":
            row = directory.create_user_in(
                conn,
                ctx,
                t,
                data.get("userName") or "",
                data.get("displayName") or "",
                external_id=data.get("externalId"),
                active=_active(data.get("active")),
            )
            extra = _user_extra(data)
            repo.set_data(conn, "user", t, row.id, extra, new=True)
            # the stored resource, without reading it back: a new user is in no group yet
            return self._user_resource(resource_type, _Stored(row, extra), None)
        row = directory.create_group_in(
            conn, ctx, t, data.get("displayName") or "", external_id=data.get("externalId")
        )
        members = _members_of(resource)
        self._set_members(row, [], members)
        repo.set_data(conn, "group", t, row.id, _group_extra(data, members, {}))
        return self.get(resource_type, row.id)

    def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        conn, t, ctx = self.conn, self.tenant_id, self.ctx
        resource_id = str(resource.id)
        if resource_type.id == "User":
            data = resource.model_dump()
            row = repo.user(conn, t, resource_id, lock=True)
            if row is None:
                raise NotFoundException(detail=f"user {resource_id} was not found")
            if expected_version is not None and user_version(row) != expected_version:
                raise PreconditionFailedException(detail="the user has changed since it was read")
            directory.update_user_in(
                conn,
                ctx,
                t,
                row,
                user_principal_name=data.get("userName") or "",
                display_name=data.get("displayName") or "",
                external_id=data.get("externalId"),
                active=_active(data.get("active")),
            )
            repo.set_data(conn, "user", t, row.id, _user_extra(data))
            return self.get(resource_type, row.id)
        row = repo.group(conn, t, resource_id, lock=True)
        if row is None:
            raise NotFoundException(detail=f"group {resource_id} was not found")
        if expected_version is not None and group_version(row) != expected_version:
            raise PreconditionFailedException(detail="the group has changed since it was read")
        # the members are read from the model, not dumped: a PATCH may carry tens of thousands
        data = resource.model_dump(exclude={"members"})
        members = _members_of(resource)
        directory.update_group_in(
            conn, ctx, t, row, display_name=data.get("displayName") or "", external_id=data.get("externalId")
        )
        current = repo.members(conn, t, [row.id])[row.id]
        self._set_members(row, current, members)
        repo.set_data(conn, "group", t, row.id, _group_extra(data, members, {m: n for _k, m, n in current}))
        # the stored state is the one given, under a new version: no need to read thousands of members back
        stored = repo.group(conn, t, row.id)
        assert resource.meta is not None
        resource.meta.version = group_version(stored)
        resource.meta.last_modified = stored.updated_at.replace(tzinfo=UTC)
        return resource

    def _set_members(
        self, group: Any, current: list[tuple[str, str, str]], wanted: list[tuple[str, str | None]]
    ) -> None:
        have = {mid: kind for kind, mid, _name in current}
        want = dict.fromkeys(value for value, _display in wanted)
        new = [m for m in want if m not in have]
        gone = [m for m in have if m not in want]
        if not new and not gone:
            return
        # ids that are no group are taken for users; the directory refuses those that are neither
        groups_named = repo.group_ids_among(self.conn, self.tenant_id, new)
        try:
            directory.change_members_in(
                self.conn,
                self.ctx,
                self.tenant_id,
                group,
                add_users=[m for m in new if m not in groups_named],
                add_groups=[m for m in new if m in groups_named],
                remove_users=[m for m in gone if have[m] == "user"],
                remove_groups=[m for m in gone if have[m] == "group"],
            )
        except NotFound as exc:
            raise InvalidValueException(
                detail=f"member {exc.extra.get('id')} is not a user or group of this tenant"
            ) from exc

    def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        conn, t, ctx = self.conn, self.tenant_id, self.ctx
        if resource_type.id == "User":
            row = repo.user(conn, t, resource_id, lock=True)
            if row is None:
                raise NotFoundException(detail=f"user {resource_id} was not found")
            if expected_version is not None and user_version(row) != expected_version:
                raise PreconditionFailedException(detail="the user has changed since it was read")
            directory.delete_user_in(conn, ctx, t, row)
            return
        row = repo.group(conn, t, resource_id, lock=True)
        if row is None:
            raise NotFoundException(detail=f"group {resource_id} was not found")
        if expected_version is not None and group_version(row) != expected_version:
            raise PreconditionFailedException(detail="the group has changed since it was read")
        directory.delete_group_in(conn, ctx, t, row)


class _Stored:
    """A users row with the kept SCIM attributes, as repo.user() reads it."""

    def __init__(self, row: Any, extra: dict[str, Any]) -> None:
        self._row = row
        self.scim_data = repo.encode(extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._row, name)


def _active(value: Any) -> bool:
    """SCIM's `active`; Entra sends it as the string "True" / "False" in some PATCH requests."""
    if value is None:
        return True
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if not isinstance(value, bool):
        raise InvalidValueException(detail="active must be true or false")
    return value


def _extra(data: dict[str, Any], own: set[str]) -> dict[str, Any]:
    extra = {k: v for k, v in data.items() if k not in own}
    return {} if set(extra) <= {"schemas"} else extra


def _user_extra(data: dict[str, Any]) -> dict[str, Any]:
    extra = _extra(data, USER_OWN)
    if data.get("active") is None:
        extra[ACTIVE_UNSET] = True
    return extra


def _members_of(resource: Any) -> list[tuple[str, str | None]]:
    """(value, display) of the members a Group resource names."""
    out = []
    for member in getattr(resource, "members", None) or []:
        if not member.value:
            raise InvalidValueException(detail="every member needs a value (the id of a user or group)")
        out.append((str(member.value), member.display))
    return out


def _group_extra(
    data: dict[str, Any], members: list[tuple[str, str | None]], computed: dict[str, str]
) -> dict[str, Any]:
    """The kept attributes of a group, with the member displays the client chose (those that differ from
    the name licensedesk shows anyway, so that a large group keeps a small document)."""
    extra = _extra(data, GROUP_OWN)
    displays = {value: display for value, display in members if display and computed.get(value) != display}
    if displays:
        extra[MEMBER_DISPLAY] = displays
    return extra
