"""Portal sign-in through a tenant's own identity provider: OpenID Connect authorization code with PKCE
(S256), by Authlib's OAuth2 client. The ID token is checked as the API checks admins' access tokens (the
tenant's issuer and keys, RS256/ES256, expiry), plus its audience (our client id) and the nonce; its
`roles` claim names the licensedesk roles, exactly as for the API."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import jwt
from authlib.common.security import generate_token
from jwt import PyJWK

from licensedesk.auth import oidc
from licensedesk.auth.roles import SCIM, Principal
from licensedesk.context import Context
from licensedesk.errors import NotFound
from licensedesk.tenancy import service as tenancy
from licensedesk.web.sessions import epoch

log = logging.getLogger("licensedesk.web")
PENDING_LIFETIME = timedelta(minutes=10)
SCOPE = "openid profile email"
DISCOVERY_TTL_SECONDS = 600.0


class SignInRefused(Exception):
    """Why a sign-in through the identity provider did not work, in words for the sign-in page."""


@dataclass(frozen=True)
class Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


_providers: dict[str, tuple[Provider, float]] = {}
_providers_lock = threading.Lock()


def provider(issuer: str) -> Provider:
    """The identity provider's endpoints from its discovery document (cached for ten minutes)."""
    with _providers_lock:
        cached = _providers.get(issuer)
        if cached is not None and time.monotonic() - cached[1] < DISCOVERY_TTL_SECONDS:
            return cached[0]
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        answer = httpx.get(url, timeout=5.0)
        answer.raise_for_status()
        doc = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SignInRefused(
            "Your identity provider could not be reached; try again, or use a token."
        ) from exc
    if str(doc.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise SignInRefused("Your identity provider names another issuer than the one configured.")
    try:
        found = Provider(issuer, doc["authorization_endpoint"], doc["token_endpoint"], doc["jwks_uri"])
    except KeyError as exc:
        raise SignInRefused("Your identity provider's discovery document is incomplete.") from exc
    with _providers_lock:
        _providers[issuer] = (found, time.monotonic())
    return found


def _client(settings: Any, redirect_uri: str) -> Any:
    # imported here: Authlib's httpx integration warns about its future on import
    from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client(
        client_id=settings.portal_client_id,
        client_secret=settings.portal_client_secret or None,
        redirect_uri=redirect_uri,
        scope=SCOPE,
        code_challenge_method="S256",
        timeout=10.0,
    )


def start(ctx: Context, settings: Any, tenant_ref: str, redirect_uri: str) -> tuple[str, dict[str, str]]:
    """Where to send the browser, and what to keep (signed, in a cookie) until it comes back."""
    try:
        tenant = tenancy.get_tenant(ctx, tenant_ref)
    except NotFound:
        raise SignInRefused(f"There is no tenant {tenant_ref}.") from None
    if not tenant.issuer:
        raise SignInRefused(f"{tenant.name} has no identity provider configured; sign in with a token.")
    idp = provider(tenant.issuer)
    verifier, state, nonce = generate_token(64), generate_token(32), generate_token(32)
    with _client(settings, redirect_uri) as client:
        url, _ = client.create_authorization_url(
            idp.authorization_endpoint, state=state, nonce=nonce, code_verifier=verifier
        )
    expires = epoch(ctx.clock.now() + PENDING_LIFETIME)
    pending = {
        "tenant": tenant.id,
        "state": state,
        "nonce": nonce,
        "verifier": verifier,
        "redirect": redirect_uri,
        "expires": str(expires),
    }
    return url, pending


def finish(
    ctx: Context, settings: Any, cache: oidc.JwksCache, pending: dict[str, str] | None, code: str, state: str
) -> Principal:
    """The admin the identity provider signed in: code exchanged with the PKCE verifier, ID token checked."""
    if pending is None or not state or not hmac.compare_digest(state, pending.get("state", "")):
        raise SignInRefused("This sign-in did not start here or took too long; start again.")
    if int(pending.get("expires", "0")) <= epoch(ctx.clock.now()):
        raise SignInRefused("This sign-in took too long; start again.")
    tenant = tenancy.get_tenant(ctx, pending["tenant"])
    if not tenant.issuer:
        raise SignInRefused(f"{tenant.name} has no identity provider configured any more.")
    idp = provider(tenant.issuer)
    try:
        with _client(settings, pending["redirect"]) as client:
            token = client.fetch_token(
                idp.token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=pending["verifier"],
            )
    except Exception as exc:  # Authlib raises OAuthError, httpx its own; either way the code was refused
        raise SignInRefused("Your identity provider refused the sign-in code; start again.") from exc
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        raise SignInRefused("Your identity provider sent no ID token.")
    try:
        claims = _validate_id_token(
            id_token, tenant.jwks_uri or idp.jwks_uri, tenant.issuer, settings.portal_client_id, cache
        )
    except oidc.InvalidToken as exc:
        log.info("portal OIDC sign-in: ID token refused: %s", exc)
        raise SignInRefused("Your identity provider's ID token is not valid here.") from exc
    if not hmac.compare_digest(str(claims.get("nonce", "")), pending["nonce"]):
        raise SignInRefused("The ID token does not belong to this sign-in; start again.")
    tid = claims.get("tid")
    if tenant.external_tenant_id and tid is not None and tid != tenant.external_tenant_id:
        raise SignInRefused("Your account belongs to another directory.")
    principal = oidc.admin_principal(claims, tenant.id)
    if not principal.roles or principal.roles == frozenset({SCIM}):
        raise SignInRefused(
            "Your account has no licensedesk role; ask an admin to give you one (the roles claim)."
        )
    return principal


def _validate_id_token(
    id_token: str, jwks_uri: str, issuer: str, audience: str, cache: oidc.JwksCache
) -> dict[str, Any]:
    """As the API checks tokens; an ID token without a `kid` is accepted only when the provider publishes
    exactly one key (some providers leave `kid` out then)."""
    try:
        header = jwt.get_unverified_header(id_token)
    except jwt.PyJWTError as exc:
        raise oidc.InvalidToken("malformed token") from exc
    if header.get("kid") is not None:
        return oidc.validate(id_token, jwks_uri=jwks_uri, issuer=issuer, audience=audience, cache=cache)
    if header.get("alg") not in oidc.ALGORITHMS:
        raise oidc.InvalidToken("signing algorithm not accepted")
    try:
        keys = [
            k for k in httpx.get(jwks_uri, timeout=5.0).json().get("keys", []) if k.get("use", "sig") == "sig"
        ]
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise oidc.InvalidToken("the identity provider's keys could not be fetched") from exc
    if len(keys) != 1:
        raise oidc.InvalidToken("the token names no key and the provider has several")
    try:
        return jwt.decode(
            id_token,
            PyJWK(keys[0]).key,
            algorithms=[header["alg"]],
            audience=audience,
            issuer=issuer,
            leeway=oidc.LEEWAY_SECONDS,
            options={"require": ["exp", "iss", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise oidc.InvalidToken(str(exc)) from exc
