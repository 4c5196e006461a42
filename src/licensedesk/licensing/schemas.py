from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_serializer

from licensedesk.api.schemas import ApiModel, Out, UtcDateTime

Ref = str  # a user id or userPrincipalName; a group id
State = Literal["Active", "Warning", "Suspended", "Error", "Disabled"]


class AssignBody(ApiModel):
    users: list[Ref] = Field(default_factory=list, max_length=10_000, description="ids or userPrincipalNames")
    groups: list[Ref] = Field(default_factory=list, max_length=10_000, description="group ids")
    allow_partial: bool = Field(default=False, description="seat as many as possible; the rest wait")
    dry_run: bool = Field(default=False, description="only answer needed / available")


class UnassignBody(ApiModel):
    users: list[Ref] = Field(default_factory=list, max_length=10_000)
    groups: list[Ref] = Field(default_factory=list, max_length=10_000)


class ReassignBody(ApiModel):
    from_: Ref = Field(alias="from", max_length=320)
    to: Ref = Field(max_length=320)


class Units(Out):
    enabled: int
    warning: int
    suspended: int


class LicenseRowOut(Out):
    plan_id: str
    plan_name: str
    product_id: str
    product_name: str
    sp_identifier: str
    purchased: int
    assigned: int
    available: int
    waiting: int
    units: Units
    status: str


class UserState(Out):
    user_id: str
    state: State | None
    error: str | None


class GroupState(Out):
    group_id: str
    processing_state: str | None


class AssignOut(Out):
    plan_id: str
    needed: int
    available: int
    would_succeed: bool
    dry_run: bool
    users: list[UserState]
    groups: list[GroupState]


class UnassignOut(Out):
    plan_id: str
    users: list[UserState]
    groups: list[GroupState]


class ReassignOut(Out):
    plan_id: str
    from_: UserState = Field(alias="from")
    to: UserState


class UserRef(Out):
    id: str
    user_principal_name: str
    display_name: str


class Source(Out):
    """`{"type": "direct"}` or `{"type": "group", "groupId", "groupName"}`."""

    type: Literal["direct", "group"]
    group_id: str | None = None
    group_name: str | None = None

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: Any) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


class LicensedUserOut(Out):
    user: UserRef
    state: State
    error: str | None
    sources: list[Source]
    claimed_at: UtcDateTime
    last_used_at: UtcDateTime | None


class UserLicenseOut(Out):
    plan_id: str
    sp_identifier: str
    state: State
    error: str | None
    sources: list[Source]
    claimed_at: UtcDateTime
    updated_at: UtcDateTime
    last_used_at: UtcDateTime | None


class GroupLicenseOut(Out):
    plan_id: str
    group_id: str
    group_name: str
    processing_state: str
    members_total: int
    members_seated: int
    members_with_errors: int
    assigned_at: UtcDateTime
    last_processed_at: UtcDateTime | None
