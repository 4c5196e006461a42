from __future__ import annotations

from typing import Literal

from pydantic import Field

from licensedesk.api.schemas import ApiModel, Out, UtcDateTime

TenantRole = Literal["global_admin", "license_admin", "billing_admin", "reader", "scim"]


class TokenCreate(ApiModel):
    role: TenantRole
    name: str = Field(default="", max_length=200)


class TokenOut(Out):
    id: str
    name: str
    role: str
    prefix: str
    created_at: UtcDateTime
    last_used_at: UtcDateTime | None
    revoked_at: UtcDateTime | None
    created_by: str | None


class TokenCreated(TokenOut):
    secret: str = Field(description="the token itself; shown this once, never again")
