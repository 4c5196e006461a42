"""Signatures of outgoing deliveries: exactly the scheme that incoming marketplace events are verified
with (billing/marketplace.py), so a vendor verifies both with one function:
`<header>: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`."""

from __future__ import annotations

import calendar
import hashlib
import hmac
import secrets
from datetime import datetime

HEADER = "X-Licensedesk-Signature"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def unix_time(at: datetime) -> int:
    """A naive UTC datetime (the clock's) as unix seconds."""
    return calendar.timegm(at.utctimetuple())


def sign(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"
