"""The Licenses area: the overview, a plan's users and groups, and assign / unassign / reassign."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from licensedesk.api.deps import Caller, caller
from licensedesk.api.idempotency import IdempotentRoute
from licensedesk.api.schemas import Page, page, problems
from licensedesk.licensing import service
from licensedesk.licensing.schemas import (
    AssignBody,
    AssignOut,
    GroupLicenseOut,
    LicensedUserOut,
    LicenseRowOut,
    ReassignBody,
    ReassignOut,
    State,
    UnassignBody,
    UnassignOut,
    UserLicenseOut,
)

router = APIRouter(prefix="/v1/tenants/{t}", tags=["licenses"], route_class=IdempotentRoute)
PlanId = Annotated[str, Path(max_length=63)]
UserRefPath = Annotated[str, Path(max_length=320, description="user id or userPrincipalName")]
GroupId = Annotated[str, Path(max_length=36)]
Cursor = Annotated[str | None, Query(max_length=500)]
Limit = Annotated[int | None, Query(ge=1, le=1000)]


@router.get("/licenses", response_model=Page[LicenseRowOut], responses=problems())
def licenses(call: Caller = caller("licenses.read")) -> object:
    """One row per plan the tenant has a pool for: purchased, assigned, available, waiting."""
    return page(service.licenses_overview(call.ctx, call.tenant), None)


@router.get("/licenses/{plan}", response_model=LicenseRowOut, responses=problems())
def license_row(plan: PlanId, call: Caller = caller("licenses.read")) -> object:
    return service.license_overview(call.ctx, call.tenant, plan)


@router.get("/licenses/{plan}/users", response_model=Page[LicensedUserOut], responses=problems())
def licensed_users(
    plan: PlanId,
    call: Caller = caller("licenses.read"),
    state: Annotated[State | None, Query()] = None,
    source: Annotated[str | None, Query(pattern="^(direct|group)$")] = None,
    idle_days: Annotated[int | None, Query(alias="idleDays", ge=0, le=36500)] = None,
    cursor: Cursor = None,
    limit: Limit = None,
) -> object:
    result = service.licensed_users(
        call.ctx,
        call.tenant,
        plan,
        state=state,
        source=source,
        idle_days=idle_days,
        cursor=cursor,
        limit=limit,
    )
    return page(result.items, result.next_cursor)


@router.get("/licenses/{plan}/groups", response_model=Page[GroupLicenseOut], responses=problems())
def plan_groups(
    plan: PlanId, call: Caller = caller("licenses.read"), cursor: Cursor = None, limit: Limit = None
) -> object:
    result = service.plan_groups(call.ctx, call.tenant, plan, cursor=cursor, limit=limit)
    return page(result.items, result.next_cursor)


@router.post(
    "/licenses/{plan}/assign",
    response_model=AssignOut,
    responses={
        **problems(409),
        202: {"model": AssignOut, "description": "accepted; groups are being processed"},
    },
)
def assign(
    plan: PlanId, body: AssignBody, response: Response, call: Caller = caller("licenses.write")
) -> object:
    """Assign to users (at once) and groups (processed by the worker: 202). All or nothing unless
    allowPartial; dryRun only answers."""
    result = service.assign(
        call.ctx,
        call.tenant,
        plan,
        users=body.users,
        groups=body.groups,
        allow_partial=body.allow_partial,
        dry_run=body.dry_run,
    )
    if not body.dry_run and any(g["processingState"] in ("Queued", "InProgress") for g in result.groups):
        response.status_code = 202
    return result


@router.post(
    "/licenses/{plan}/unassign",
    response_model=UnassignOut,
    responses={
        **problems(409),
        202: {"model": UnassignOut, "description": "accepted; groups are being processed"},
    },
)
def unassign(
    plan: PlanId, body: UnassignBody, response: Response, call: Caller = caller("licenses.write")
) -> object:
    result = service.unassign(call.ctx, call.tenant, plan, users=body.users, groups=body.groups)
    if result.groups:
        response.status_code = 202
    return result


@router.post("/licenses/{plan}/reassign", response_model=ReassignOut, responses=problems(409))
def reassign(plan: PlanId, body: ReassignBody, call: Caller = caller("licenses.write")) -> dict[str, Any]:
    result = service.reassign(call.ctx, call.tenant, plan, body.from_, body.to)
    return {"planId": result.plan_id, "from": result.from_user, "to": result.to_user}


@router.get("/users/{user}/licenses", response_model=Page[UserLicenseOut], responses=problems())
def user_licenses(user: UserRefPath, call: Caller = caller("licenses.read")) -> object:
    return page(service.user_licenses(call.ctx, call.tenant, user), None)


@router.get("/groups/{id}/licenses", response_model=Page[GroupLicenseOut], responses=problems())
def group_licenses(id: GroupId, call: Caller = caller("licenses.read")) -> object:
    return page(service.group_licenses(call.ctx, call.tenant, id), None)


@router.post("/users/{user}/reprocess", response_model=Page[UserLicenseOut], responses=problems(409))
def reprocess_user(user: UserRefPath, call: Caller = caller("licenses.write")) -> object:
    return page(service.reprocess_user(call.ctx, call.tenant, user), None)


@router.post(
    "/groups/{id}/reprocess", status_code=202, response_model=Page[GroupLicenseOut], responses=problems(409)
)
def reprocess_group(id: GroupId, call: Caller = caller("licenses.write")) -> object:
    return page(service.reprocess_group(call.ctx, call.tenant, id), None)
