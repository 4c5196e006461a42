"""Opaque, stable cursors: the sort key of the last item of a page, base64url-encoded JSON."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from licensedesk.errors import DomainError

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class InvalidCursor(DomainError):
    code = "invalid_cursor"
    status = 400
    title = "Invalid cursor"


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, shape: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The sort key in a cursor, typed by `shape`: "str", "time" (a datetime) or "int" (0-1000). Anything
    this service could not have issued is an InvalidCursor (400), never an error further in."""
    if cursor is None or cursor == "":
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("the cursor is not one this service issued") from exc
    if not isinstance(key, list) or len(key) != len(shape):
        raise InvalidCursor("the cursor is not one this service issued")
    return tuple(_typed(value, kind) for value, kind in zip(key, shape, strict=True))


def _typed(value: Any, kind: str) -> Any:
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 1000:
            return value
    elif isinstance(value, str) and "\x00" not in value and len(value) <= 2000:
        if kind == "str":
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is None:
            return parsed
    raise InvalidCursor("the cursor is not one this service issued")


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if limit < 1 or limit > MAX_LIMIT:
        from licensedesk.errors import ValidationFailed

        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit
