from __future__ import annotations

from pydantic import Field

from licensedesk.api.schemas import ApiModel, Out, UtcDateTime


class TenantCreate(ApiModel):
    slug: str = Field(max_length=63, examples=["contoso"])
    name: str = Field(max_length=200)
    external_tenant_id: str | None = Field(default=None, max_length=200)
    issuer: str | None = Field(default=None, max_length=500)
    jwks_uri: str | None = Field(default=None, max_length=500)


class TenantUpdate(ApiModel):
    name: str | None = Field(default=None, max_length=200)
    external_tenant_id: str | None = Field(default=None, max_length=200)
    issuer: str | None = Field(default=None, max_length=500)
    jwks_uri: str | None = Field(default=None, max_length=500)


class TenantOut(Out):
    id: str
    slug: str
    name: str
    external_tenant_id: str | None
    issuer: str | None
    jwks_uri: str | None
    created_at: UtcDateTime
