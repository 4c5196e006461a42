"""Users, groups, memberships and the one search field."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic.alias_generators import to_camel

from licensedesk.api.deps import Caller, caller
from licensedesk.api.idempotency import IdempotentRoute
from licensedesk.api.schemas import Page, page, problems
from licensedesk.directory import service
from licensedesk.directory.schemas import (
    GroupCreate,
    GroupOut,
    GroupUpdate,
    MemberOut,
    Members,
    MembershipChangeOut,
    SearchHitOut,
    UserCreate,
    UserOut,
    UserUpdate,
)
from licensedesk.errors import ValidationFailed

router = APIRouter(prefix="/v1/tenants/{t}", tags=["directory"], route_class=IdempotentRoute)
UserRefPath = Annotated[str, Path(max_length=320, description="user id or userPrincipalName")]
GroupId = Annotated[str, Path(max_length=36)]
MemberId = Annotated[str, Path(max_length=320)]
Cursor = Annotated[str | None, Query(max_length=500)]
Limit = Annotated[int | None, Query(ge=1, le=1000)]
Search = Annotated[str | None, Query(max_length=200)]


def _no_nulls(changes: dict[str, Any], *names: str) -> dict[str, Any]:
    for name in names:
        if name in changes and changes[name] is None:
            raise ValidationFailed(f"{to_camel(name)} cannot be null", field=to_camel(name))
    return changes


@router.get("/users", response_model=Page[UserOut], responses=problems())
def list_users(
    call: Caller = caller("directory.read"), search: Search = None, cursor: Cursor = None, limit: Limit = None
) -> object:
    """Users by userPrincipalName; `?search=` matches a prefix of the userPrincipalName or of any word of
    the displayName, case-insensitive."""
    result = service.list_users(call.ctx, call.tenant, search=search, cursor=cursor, limit=limit)
    return page(result.items, result.next_cursor)


@router.post("/users", status_code=201, response_model=UserOut, responses=problems(409))
def create_user(body: UserCreate, call: Caller = caller("directory.write")) -> object:
    return service.create_user(
        call.ctx,
        call.tenant,
        body.user_principal_name,
        body.display_name,
        external_id=body.external_id,
        active=body.active,
    )


@router.get("/users/{user}", response_model=UserOut, responses=problems())
def get_user(user: UserRefPath, call: Caller = caller("directory.read")) -> object:
    return service.get_user(call.ctx, call.tenant, user)


@router.patch("/users/{user}", response_model=UserOut, responses=problems(409))
def update_user(user: UserRefPath, body: UserUpdate, call: Caller = caller("directory.write")) -> object:
    changes = _no_nulls(body.model_dump(exclude_unset=True), "user_principal_name", "display_name", "active")
    return service.update_user(call.ctx, call.tenant, user, **changes)


@router.delete("/users/{user}", status_code=204, responses=problems())
def delete_user(user: UserRefPath, call: Caller = caller("directory.write")) -> Response:
    service.delete_user(call.ctx, call.tenant, user)
    return Response(status_code=204)


@router.get("/groups", response_model=Page[GroupOut], responses=problems())
def list_groups(
    call: Caller = caller("directory.read"), search: Search = None, cursor: Cursor = None, limit: Limit = None
) -> object:
    result = service.list_groups(call.ctx, call.tenant, search=search, cursor=cursor, limit=limit)
    return page(result.items, result.next_cursor)


@router.post("/groups", status_code=201, response_model=GroupOut, responses=problems(409))
def create_group(body: GroupCreate, call: Caller = caller("directory.write")) -> object:
    members = body.members.model_dump() if body.members else None
    return service.create_group(
        call.ctx,
        call.tenant,
        body.display_name,
        description=body.description,
        external_id=body.external_id,
        members=members,
    )


@router.get("/groups/{id}", response_model=GroupOut, responses=problems())
def get_group(id: GroupId, call: Caller = caller("directory.read")) -> object:
    return service.get_group(call.ctx, call.tenant, id)


@router.patch("/groups/{id}", response_model=GroupOut, responses=problems(409))
def update_group(id: GroupId, body: GroupUpdate, call: Caller = caller("directory.write")) -> object:
    changes = _no_nulls(body.model_dump(exclude_unset=True), "display_name", "description")
    return service.update_group(call.ctx, call.tenant, id, **changes)


@router.delete("/groups/{id}", status_code=204, responses=problems(409))
def delete_group(id: GroupId, call: Caller = caller("directory.write")) -> Response:
    service.delete_group(call.ctx, call.tenant, id)
    return Response(status_code=204)


@router.get("/groups/{id}/members", response_model=Page[MemberOut], responses=problems())
def list_members(
    id: GroupId,
    call: Caller = caller("directory.read"),
    transitive: bool = False,
    cursor: Cursor = None,
    limit: Limit = None,
) -> object:
    result = service.list_members(
        call.ctx, call.tenant, id, transitive=transitive, cursor=cursor, limit=limit
    )
    return page(result.items, result.next_cursor)


@router.post("/groups/{id}/members", response_model=MembershipChangeOut, responses=problems(409))
def add_members(id: GroupId, body: Members, call: Caller = caller("directory.write")) -> object:
    return service.add_members(call.ctx, call.tenant, id, users=body.users, groups=body.groups)


@router.delete("/groups/{id}/members/{member_id}", response_model=MembershipChangeOut, responses=problems())
def remove_member(id: GroupId, member_id: MemberId, call: Caller = caller("directory.write")) -> object:
    return service.remove_member(call.ctx, call.tenant, id, member_id)


@router.get("/directory/search", response_model=Page[SearchHitOut], responses=problems())
def search(
    q: Annotated[str, Query(min_length=1, max_length=200)],
    call: Caller = caller("directory.read"),
    types: Annotated[str, Query(max_length=20, description="user, group or user,group")] = "user,group",
    cursor: Cursor = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = 20,
) -> object:
    """Users and groups in one ranked list: whole-name and shorter matches first."""
    kinds = [k.strip() for k in types.split(",") if k.strip()]
    result = service.search(call.ctx, call.tenant, q, types=kinds, cursor=cursor, limit=limit)
    return page(result.items, result.next_cursor)
