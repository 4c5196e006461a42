"""What every API model shares: camelCase names, unknown fields refused, UTC times with a Z."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)
from pydantic.alias_generators import to_camel


def _utc_text(value: datetime) -> str:
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def _to_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError as exc:
        raise ValueError("the time is out of range once in UTC") from exc


UtcDateTime = Annotated[datetime, PlainSerializer(_utc_text, return_type=str, when_used="json")]
_NUMBER = re.compile(r"\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")


def _iso_only(value: Any) -> Any:
    # pydantic's lax mode reads a number (or a numeric string) as Unix time: the API documents date-time
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value)):
        raise ValueError("give the time in ISO 8601, e.g. 2026-11-27T12:00:00Z")
    return value


# an incoming time: any ISO-8601 form; a time without a zone is taken as UTC
InstantIn = Annotated[
    datetime, Field(strict=False), BeforeValidator(_iso_only), AfterValidator(_to_naive_utc)
]


def _refuse_nul(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
    elif isinstance(value, dict):
        for k, v in value.items():
            _refuse_nul(k)
            _refuse_nul(v)
    elif isinstance(value, list):
        for v in value:
            _refuse_nul(v)


class ApiModel(BaseModel):
    """Request bodies: camelCase names only, unknown fields refused, JSON types taken as they are
    ("5" is not a number, "yes" not a boolean), and no NUL characters anywhere."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=False,
        extra="forbid",
        strict=True,
        str_max_length=100_000,
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        _refuse_nul(data)
        return data


class Out(BaseModel):
    """Response models (camelCase on the wire)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, from_attributes=True)


T = TypeVar("T")


class Page(Out, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")


class Problem(BaseModel):
    """An RFC 9457 problem document, with a stable `code` and fields that explain it."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    code: str


def page(items: list[Any], next_cursor: str | None) -> dict[str, Any]:
    return {"items": items, "nextCursor": next_cursor}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: the problem documents a route may answer with. POSTs list 409 too: a request with the same
    Idempotency-Key may still be running."""
    described = {
        400: "Malformed request (bad JSON, unknown fields, wrong types)",
        401: "Missing or invalid bearer token",
        403: "The role may not do this",
        404: "Not found, or not yours",
        409: "A rule refuses the change",
        413: "Body too large",
        422: "Well-formed but invalid values",
    }
    base = {400, 401, 403, 404, 413, 422}
    return {
        s: {
            "model": Problem,
            "description": described.get(s, "Error"),
            "content": {"application/problem+json": {}},
        }
        for s in sorted(base | set(statuses))
    }
