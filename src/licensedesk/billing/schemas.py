from __future__ import annotations

from typing import Literal

from pydantic import Field

from licensedesk.api.schemas import ApiModel, InstantIn, Out, UtcDateTime

Status = Literal["Active", "Warning", "Suspended", "Expired", "Cancelled"]


class SubscriptionCreate(ApiModel):
    plan_id: str = Field(max_length=63)
    quantity: int = Field(ge=1, le=10_000_000)
    status: Literal["Active", "Warning", "Suspended"] = "Active"
    trial: bool = False
    term_ends_at: InstantIn | None = None
    auto_renew: bool = False


class SubscriptionUpdate(ApiModel):
    quantity: int | None = Field(default=None, ge=1, le=10_000_000)
    status: Status | None = None
    auto_renew: bool | None = None
    term_ends_at: InstantIn | None = None
    force: bool = Field(
        default=False,
        description="allow fewer seats than assigned: the most recently licensed users lose their seats",
    )


class SubscriptionOut(Out):
    id: str
    plan_id: str
    quantity: int
    status: Status
    trial: bool
    trial_ends_at: UtcDateTime | None
    term_ends_at: UtcDateTime | None
    auto_renew: bool
    source: str
    external_id: str | None
    created_at: UtcDateTime
