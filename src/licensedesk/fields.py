"""Checks on the values of SPEC section 1's fields, shared by every way in (API, SCIM, CLI, import)."""

from __future__ import annotations

import re
import unicodedata

from licensedesk.errors import ValidationFailed

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
UPN = re.compile(r"^[^@\s]+@[^@\s]+$")


def text(value: str, field: str, *, max_length: int, required: bool = True) -> str:
    """A display string: trimmed, NFC, no control characters (NUL, escapes), bounded length."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be a string", field=field)
    value = unicodedata.normalize("NFC", value.strip())
    # format characters (direction marks, zero-width joiners) belong in names, but are no name alone
    visible = any(unicodedata.category(ch) != "Cf" and not ch.isspace() for ch in value)
    if required and not visible:
        raise ValidationFailed(f"{field} must not be empty", field=field)
    if value and not visible:
        raise ValidationFailed(f"{field} has no visible characters", field=field)
    if len(value) > max_length:
        raise ValidationFailed(f"{field} is longer than {max_length} characters", field=field)
    # Cc = controls (NUL, ESC ...); Cs = lone surrogates, which no database can store as text
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ValidationFailed(f"{field} contains control characters", field=field)
    return value


def optional_text(value: str | None, field: str, *, max_length: int) -> str | None:
    if value is None:
        return None
    value = text(value, field, max_length=max_length, required=False)
    return value or None


def slug(value: str, field: str = "slug") -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise ValidationFailed(
            f"{field} must be 1-63 lower-case letters, digits and inner hyphens", field=field
        )
    return value


def user_principal_name(value: str) -> str:
    value = text(value, "userPrincipalName", max_length=320)
    # an address with invisible direction or zero-width characters reads as another one: refuse it
    if not UPN.match(value) or any(unicodedata.category(ch) == "Cf" for ch in value):
        raise ValidationFailed(
            "userPrincipalName must look like an e-mail address", field="userPrincipalName"
        )
    return value


def url(value: str | None, field: str) -> str | None:
    value = optional_text(value, field, max_length=500)
    if value is not None and not re.match(r"^https?://[^\s]+$", value):
        raise ValidationFailed(f"{field} must be an http(s) URL", field=field)
    return value
