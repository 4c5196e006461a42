"""OIDC access tokens (JWT) of admins from a tenant's own identity provider, carrying a `roles` claim.

The tenant is found by the token's `iss`; its signature is checked against the tenant's JWKS (cached,
refreshed when an unknown `kid` appears, at most once a minute); only RS256 and ES256 are accepted.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import jwt
from jwt import PyJWK

from licensedesk.auth.roles import TENANT_ROLES, Principal

ALGORITHMS = ["RS256", "ES256"]
LEEWAY_SECONDS = 60
REFRESH_AT_MOST_EVERY = 60.0


class InvalidToken(Exception):
    pass


class JwksCache:
    """Signing keys by JWKS URI and kid. A kid not in the cache triggers one refetch per minute at most."""

    def __init__(self, fetch: Any = None) -> None:
        self._keys: dict[str, dict[str, PyJWK]] = {}
        self._fetched_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._fetch = fetch or _http_fetch

    def key(self, jwks_uri: str, kid: str | None) -> PyJWK:
        keys = self._keys.get(jwks_uri)
        if keys is not None and kid in keys:
            return keys[kid]
        with self._lock:
            keys = self._keys.get(jwks_uri)
            if keys is None or (
                kid not in keys
                and time.monotonic() - self._fetched_at.get(jwks_uri, -1e9) >= REFRESH_AT_MOST_EVERY
            ):
                keys = self._load(jwks_uri)
        if kid not in keys:
            raise InvalidToken("unknown signing key")
        return keys[kid]

    def _load(self, jwks_uri: str) -> dict[str, PyJWK]:
        self._fetched_at[jwks_uri] = time.monotonic()
        try:
            document = self._fetch(jwks_uri)
        except Exception as exc:  # the identity provider is down: refuse the token, never crash
            raise InvalidToken("the identity provider's keys could not be fetched") from exc
        keys: dict[str, PyJWK] = {}
        for jwk in document.get("keys", []):
            try:
                key = PyJWK(jwk)
            except jwt.PyJWTError:
                continue
            if key.algorithm_name in ALGORITHMS or jwk.get("alg") is None:
                keys[str(jwk.get("kid"))] = key
        self._keys[jwks_uri] = keys
        return keys


def _http_fetch(uri: str) -> dict[str, Any]:
    response = httpx.get(uri, timeout=5.0)
    response.raise_for_status()
    return json.loads(response.content)


def unverified_issuer(token: str) -> str | None:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    iss = claims.get("iss")
    return iss if isinstance(iss, str) else None


def validate(token: str, *, jwks_uri: str, issuer: str, audience: str, cache: JwksCache) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken("malformed token") from exc
    if header.get("alg") not in ALGORITHMS:
        raise InvalidToken("signing algorithm not accepted")
    key = cache.key(jwks_uri, header.get("kid"))
    try:
        return jwt.decode(
            token,
            key.key,
            algorithms=[header["alg"]],
            audience=audience,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc


def admin_principal(claims: dict[str, Any], tenant_id: str) -> Principal:
    roles = claims.get("roles") or []
    if isinstance(roles, str):
        roles = [roles]
    granted = frozenset(r for r in roles if isinstance(r, str) and r in TENANT_ROLES)
    subject = str(claims.get("oid") or claims.get("sub") or "")
    name = str(claims.get("preferred_username") or claims.get("upn") or claims.get("email") or subject)
    return Principal(kind="user", id=subject, name=name, roles=granted, tenant_id=tenant_id, claims=claims)
