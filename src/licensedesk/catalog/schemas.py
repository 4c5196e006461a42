from __future__ import annotations

from pydantic import Field

from licensedesk.api.schemas import ApiModel, Out, UtcDateTime


class ProductCreate(ApiModel):
    id: str = Field(max_length=63, examples=["innofalls-charts"])
    name: str = Field(max_length=200)
    audience: str = Field(max_length=500, examples=["api://innofalls-charts"])


class PlanCreate(ApiModel):
    id: str = Field(max_length=63, examples=["innofalls-charts-pro"])
    name: str = Field(max_length=200)
    sp_identifier: str = Field(max_length=200, examples=["innofalls.charts.pro"])
    trial_days: int = Field(default=0, ge=0, le=3650)
    grace_days: int | None = Field(default=None, ge=0, le=3650)
    suspension_days: int | None = Field(default=None, ge=0, le=3650)


class ProductOut(Out):
    id: str
    name: str
    audience: str
    created_at: UtcDateTime


class PlanOut(Out):
    id: str
    product_id: str
    name: str
    sp_identifier: str
    trial_days: int
    grace_days: int | None
    suspension_days: int | None
    created_at: UtcDateTime
