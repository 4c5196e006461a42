"""Reclaiming idle seats: the tenant's policy (global_admin writes, readers read), the dry run, and a run
now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from licensedesk.api.deps import Caller, caller
from licensedesk.api.idempotency import IdempotentRoute
from licensedesk.api.schemas import ApiModel, Out, UtcDateTime, problems
from licensedesk.licensing import reclaim

router = APIRouter(prefix="/v1/tenants/{t}/reclaim", tags=["licenses"], route_class=IdempotentRoute)


class PolicyIn(ApiModel):
    enabled: bool = Field(description="whether the worker reclaims by itself (off by default)")
    idle_days: int = Field(ge=1, le=reclaim.MAX_IDLE_DAYS, description="reclaim seats idle for more days")


class PolicyOut(Out):
    enabled: bool
    idle_days: int
    updated_at: UtcDateTime | None
    last_run_at: UtcDateTime | None


class UserRef(Out):
    id: str
    user_principal_name: str
    display_name: str


class CandidateOut(Out):
    user: UserRef
    plan_id: str
    state: str
    claimed_at: UtcDateTime
    last_used_at: UtcDateTime | None
    idle_since: UtcDateTime
    also_through_groups: bool = Field(description="the user keeps the license through a group")


class PreviewOut(Out):
    idle_days: int
    items: list[CandidateOut]
    next_cursor: str | None


class RunOut(Out):
    idle_days: int
    reclaimed: int
    items: list[CandidateOut] = Field(description="the reclaimed assignments (the first 1000)")


@router.get("/policy", response_model=PolicyOut, responses=problems())
def get_policy(call: Caller = caller("licenses.read")) -> object:
    return reclaim.get_policy(call.ctx, call.tenant)


@router.put("/policy", response_model=PolicyOut, responses=problems())
def set_policy(body: PolicyIn, call: Caller = caller("reclaim.write")) -> object:
    return reclaim.set_policy(call.ctx, call.tenant, enabled=body.enabled, idle_days=body.idle_days)


@router.get("/preview", response_model=PreviewOut, responses=problems())
def preview(
    call: Caller = caller("licenses.read"),
    idle_days: Annotated[
        int | None,
        Query(alias="idleDays", ge=1, le=reclaim.MAX_IDLE_DAYS, description="default: the policy's"),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> object:
    """The dry run: the direct assignments a run would reclaim now. Changes nothing."""
    days, result = reclaim.preview(call.ctx, call.tenant, idle_days=idle_days, cursor=cursor, limit=limit)
    return {"idleDays": days, "items": result.items, "nextCursor": result.next_cursor}


@router.post("/run", response_model=RunOut, responses=problems(409))
def run(call: Caller = caller("reclaim.write")) -> object:
    """Reclaim now with the policy's idleDays (whether or not the worker does it by itself)."""
    return reclaim.run(call.ctx, call.tenant)
