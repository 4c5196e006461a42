"""The audit log, newest first; `Accept: text/csv` exports it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from licensedesk.api.deps import Caller, caller
from licensedesk.api.schemas import InstantIn, Page, page, problems
from licensedesk.audit import service
from licensedesk.audit.schemas import AuditEventOut

router = APIRouter(prefix="/v1/tenants/{t}", tags=["audit"])
Text = Annotated[str | None, Query(max_length=200)]


@router.get(
    "/audit",
    response_model=Page[AuditEventOut],
    responses={
        **problems(),
        200: {
            "content": {"application/json": {}, "text/csv": {}},
            "description": "audit events; CSV with Accept: text/csv",
        },
    },
)
def audit_events(
    request: Request,
    call: Caller = caller("audit.read"),
    since: Annotated[InstantIn | None, Query()] = None,
    until: Annotated[InstantIn | None, Query()] = None,
    action: Text = None,
    actor_id: Annotated[str | None, Query(alias="actorId", max_length=200)] = None,
    target_id: Annotated[str | None, Query(alias="targetId", max_length=200)] = None,
    plan_id: Annotated[str | None, Query(alias="planId", max_length=63)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int | None, Query(ge=1, le=1000)] = None,
) -> object:
    filters: dict[str, Any] = {
        "since": since,
        "until": until,
        "action": action,
        "actor_id": actor_id,
        "target_id": target_id,
        "plan_id": plan_id,
    }
    accept = request.headers.get("accept", "")
    if "text/csv" in accept and "application/json" not in accept:
        return StreamingResponse(
            service.export_csv(call.ctx, call.tenant, **filters),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    result = service.query(call.ctx, call.tenant, cursor=cursor, limit=limit, **filters)
    return page(result.items, result.next_cursor)
