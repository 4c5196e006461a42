from __future__ import annotations

from typing import Literal

from pydantic import Field

from licensedesk.api.schemas import ApiModel, Out, UtcDateTime


class UserCreate(ApiModel):
    user_principal_name: str = Field(max_length=320, examples=["ann.lee@contoso.com"])
    display_name: str = Field(default="", max_length=256)
    external_id: str | None = Field(default=None, max_length=200)
    active: bool = True


class UserUpdate(ApiModel):
    user_principal_name: str | None = Field(default=None, max_length=320)
    display_name: str | None = Field(default=None, max_length=256)
    external_id: str | None = Field(default=None, max_length=200)
    active: bool | None = None


class UserOut(Out):
    id: str
    user_principal_name: str
    display_name: str
    external_id: str | None
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime


class Members(ApiModel):
    users: list[str] = Field(
        default_factory=list, max_length=100_000, description="ids or userPrincipalNames"
    )
    groups: list[str] = Field(default_factory=list, max_length=10_000, description="group ids")


class GroupCreate(ApiModel):
    display_name: str = Field(max_length=256)
    description: str = Field(default="", max_length=1024)
    external_id: str | None = Field(default=None, max_length=200)
    members: Members | None = None


class GroupUpdate(ApiModel):
    display_name: str | None = Field(default=None, max_length=256)
    description: str | None = Field(default=None, max_length=1024)
    external_id: str | None = Field(default=None, max_length=200)


class GroupOut(Out):
    id: str
    display_name: str
    description: str
    external_id: str | None
    created_at: UtcDateTime
    updated_at: UtcDateTime


class MemberOut(Out):
    type: Literal["user", "group"]
    id: str
    display_name: str
    user_principal_name: str | None = None


class MembershipChangeOut(Out):
    added_users: list[str]
    added_groups: list[str]
    removed_users: list[str]
    removed_groups: list[str]


class SearchHitOut(Out):
    type: Literal["user", "group"]
    id: str
    display_name: str
    user_principal_name: str | None
    matched: str
