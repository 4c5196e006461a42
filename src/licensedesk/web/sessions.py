"""Portal sign-in: sessions in signed cookies, CSRF tokens, one-time sign-in links, token sign-in.

A session names the tenant, the roles and what signed in (an API token's id, a sign-in link's id or an
OIDC subject), never a secret. The cookie is `base64(json).base64(HMAC-SHA256)`; the CSRF token of a
session is an HMAC of its random id, so it needs no storage and dies with the session.

A signature alone cannot be taken back, so every session also has a row in `portal_sessions` (keyed by the
SHA-256 of its random id) that each portal request looks up: signing out deletes it, and a copy of the
cookie stops working at once. A session made from an API token also ends when that token is revoked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from licensedesk.audit import service as audit
from licensedesk.auth import service as auth
from licensedesk.auth.roles import GLOBAL_ADMIN, OPERATOR, SCIM, TENANT_ROLES, Principal
from licensedesk.context import Actor, Context
from licensedesk.errors import NotFound, ValidationFailed
from licensedesk.tenancy import service as tenancy
from licensedesk.web import repository

COOKIE = "ld_admin"
SESSION_LIFETIME = timedelta(hours=8)
LINK_LIFETIME = timedelta(minutes=15)
LINK_PREFIX = "ldl_"
SESSION_KEY = "session"


@dataclass(frozen=True)
class Session:
    sid: str
    tenant_id: str
    kind: str  # token | link | user
    subject: str  # the API token's id, the sign-in link's id, or the OIDC subject
    name: str
    roles: tuple[str, ...]
    expires: int  # seconds since the epoch

    def principal(self) -> Principal:
        return Principal(
            kind="user" if self.kind == "user" else "token",
            id=self.subject,
            name=self.name,
            roles=frozenset(self.roles),
            tenant_id=self.tenant_id,
            token_id=self.subject if self.kind == "token" else None,
        )


def epoch(at: datetime) -> int:
    return int(at.replace(tzinfo=UTC).timestamp())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Signer:
    """Signs and reads session cookies; answers CSRF tokens of sessions."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, purpose: str, data: bytes) -> bytes:
        return hmac.new(self._key, purpose.encode() + b"\0" + data, hashlib.sha256).digest()

    def dumps(self, session: Session) -> str:
        body = json.dumps(asdict(session), separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac('session', body))}"

    def loads(self, value: str | None, now: datetime) -> Session | None:
        """The session of a cookie, or None when it is missing, forged or expired."""
        if not value or len(value) > 4096 or value.count(".") != 1:
            return None
        body_text, mac_text = value.split(".")
        try:
            body = _unb64(body_text)
            mac = _unb64(mac_text)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac("session", body)):
            return None
        try:
            data = json.loads(body)
            session = Session(**{**data, "roles": tuple(data["roles"])})
        except (ValueError, TypeError, KeyError):
            return None
        if session.expires <= epoch(now):
            return None
        return session

    def csrf_token(self, session: Session) -> str:
        return self.form_token(session.sid)

    def form_token(self, nonce: str, purpose: str = "csrf") -> str:
        """The CSRF token of a form tied to a random nonce (a session's id, or a cookie's before sign-in)."""
        return _b64(self._mac(purpose, nonce.encode()))

    def form_token_ok(self, nonce: str | None, token: str | None, purpose: str = "csrf") -> bool:
        if not nonce or not token:
            return False
        return hmac.compare_digest(token.encode(), self.form_token(nonce, purpose).encode())

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return self.form_token_ok(session.sid, token)

    def dumps_data(self, purpose: str, data: dict[str, str]) -> str:
        """Signs data the portal hands the browser and must get back unchanged (a pending OIDC sign-in)."""
        body = json.dumps(data, separators=(",", ":")).encode()
        return f"{_b64(body)}.{_b64(self._mac(purpose, body))}"

    def loads_data(self, purpose: str, value: str | None) -> dict[str, str] | None:
        if not value or len(value) > 4096 or value.count(".") != 1:
            return None
        body_text, mac_text = value.split(".")
        try:
            body, mac = _unb64(body_text), _unb64(mac_text)
        except ValueError:
            return None
        if not hmac.compare_digest(mac, self._mac(purpose, body)):
            return None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None


_key_lock = threading.Lock()


def signing_key(ctx: Context, secret_key: str) -> bytes:
    """The key session cookies are signed with: derived from LICENSEDESK_SECRET_KEY when set, else made on
    first use and kept in the database (every process sharing it signs alike). It has to be usable to
    sign, so it is stored as is, not hashed."""
    if secret_key:
        return hmac.new(secret_key.encode(), b"licensedesk portal sessions", hashlib.sha256).digest()
    with _key_lock:
        with ctx.db.read() as conn:
            stored = repository.key(conn, SESSION_KEY)
        if stored is None:
            try:
                with ctx.db.write() as conn:
                    repository.insert_key(conn, SESSION_KEY, secrets.token_urlsafe(48), ctx.clock.now())
            except IntegrityError:
                pass  # another process made it first: use theirs
            with ctx.db.read() as conn:
                stored = repository.key(conn, SESSION_KEY)
        assert stored is not None
        return stored.encode()


def new_session(ctx: Context, principal: Principal, tenant_id: str, kind: str) -> Session:
    return Session(
        sid=secrets.token_urlsafe(18),
        tenant_id=tenant_id,
        kind=kind,
        subject=principal.id,
        name=principal.name,
        roles=tuple(sorted(principal.roles)),
        expires=epoch(ctx.clock.now() + SESSION_LIFETIME),
    )


def _session_hash(session: Session) -> str:
    return hashlib.sha256(session.sid.encode()).hexdigest()


def _at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def _signed_in(ctx: Context, session: Session, how: str) -> None:
    """Stores the new session (and drops every expired one: cheap by the expiry index) and audits it."""
    actor = Actor("user" if session.kind == "user" else "token", session.subject, session.name)
    acting = ctx.as_actor(actor, ctx.request_id)
    now = ctx.clock.now()
    with ctx.db.write() as conn:
        repository.delete_expired_sessions(conn, now)
        repository.insert_session(
            conn,
            tenant_id=session.tenant_id,
            id=_session_hash(session),
            kind=session.kind,
            subject=session.subject[:255],
            created_at=now,
            expires_at=_at(session.expires),
        )
        audit.record(
            conn,
            acting,
            session.tenant_id,
            "admin.signed_in",
            audit.Target("portal", None, "admin portal"),
            details={"method": how, "roles": list(session.roles)},
        )


def sign_in_with_token(ctx: Context, secret: str, tenant_ref: str | None) -> Session:
    """A session for an API token, validated as the API validates it. An operator token names the tenant
    to work in; a tenant token works in its own tenant."""
    principal = auth.authenticate(ctx, secret.strip())
    if principal is None:
        raise ValidationFailed("This token is not valid (unknown, mistyped or revoked).", field="token")
    if principal.roles == frozenset({SCIM}):
        raise ValidationFailed(
            "A SCIM token can only provision users; it cannot sign in here.", field="token"
        )
    if principal.is_operator:
        if not tenant_ref or not tenant_ref.strip():
            raise ValidationFailed(
                "An operator token works in every tenant: name the tenant.", field="tenant"
            )
        try:
            tenant_id = tenancy.get_tenant(ctx, tenant_ref.strip()).id
        except NotFound:
            raise ValidationFailed(f"There is no tenant {tenant_ref.strip()}.", field="tenant") from None
    else:
        assert principal.tenant_id is not None
        tenant_id = principal.tenant_id
    session = new_session(ctx, principal, tenant_id, "token")
    _signed_in(ctx, session, "token")
    return session


def session_principal(ctx: Context, session: Session) -> Principal | None:
    """The principal of a live session, checked again on every request: a session signed out of (its row
    deleted) is over, and so is one whose token has been revoked since."""
    with ctx.db.read() as conn:
        live = repository.session_live(conn, session.tenant_id, _session_hash(session), ctx.clock.now())
    if not live:
        return None
    if session.kind != "token":
        return session.principal()
    principal = auth.token_principal(
        ctx, None if OPERATOR in session.roles else session.tenant_id, session.subject
    )
    if principal is None or principal.roles != frozenset(session.roles):
        return None
    if not principal.sees_tenant(session.tenant_id):
        return None
    return session.principal()


def create_sign_in_link(ctx: Context, tenant_ref: str, role: str = GLOBAL_ADMIN, *, name: str = "") -> str:
    """A one-time sign-in link's secret: single use, valid for LINK_LIFETIME, stored only as SHA-256."""
    if role not in TENANT_ROLES or role == SCIM:
        raise ValidationFailed("a sign-in link is for a tenant admin role", field="role")
    secret = LINK_PREFIX + secrets.token_urlsafe(32)
    now = ctx.clock.now()
    with ctx.db.write() as conn:
        tenant = tenancy.resolve(conn, tenant_ref)
        repository.insert_link(
            conn,
            tenant_id=tenant.id,
            id=str(uuid.uuid4()),
            secret_hash=auth.hash_secret(secret),
            role=role,
            name=name or f"sign-in link ({role})",
            created_at=now,
            expires_at=now + LINK_LIFETIME,
        )
    return secret


@dataclass(frozen=True)
class SignInLink:
    """What a sign-in link opens, shown before it is used."""

    tenant_id: str
    tenant_name: str
    role: str
    name: str
    expires_at: datetime


def _live_link(conn: Connection, secret: str, now: datetime) -> Any:
    if not secret.startswith(LINK_PREFIX) or len(secret) > 100:
        return None
    digest = auth.hash_secret(secret)
    row = repository.link_by_hash(conn, digest)
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        return None
    if row.used_at is not None or row.expires_at <= now:
        return None
    return row


def sign_in_link(ctx: Context, secret: str) -> SignInLink | None:
    """What a sign-in link would open, without using it (link previewers and scanners fetch links; only
    the press of the button on the page it shows signs in); None when it is unknown, used or expired."""
    with ctx.db.read() as conn:
        row = _live_link(conn, secret, ctx.clock.now())
        if row is None:
            return None
        tenant = tenancy.resolve(conn, row.tenant_id)
    return SignInLink(row.tenant_id, tenant.name, row.role, row.name, row.expires_at)


def redeem_sign_in_link(ctx: Context, secret: str) -> Session | None:
    """The session a sign-in link opens, once; None when it is unknown, used or expired."""
    now = ctx.clock.now()
    with ctx.db.write() as conn:
        row = _live_link(conn, secret, now)
        if row is None or not repository.use_link(conn, row.tenant_id, row.id, now):
            return None
    principal = Principal("token", row.id, row.name, frozenset({row.role}), row.tenant_id)
    session = new_session(ctx, principal, row.tenant_id, "link")
    _signed_in(ctx, session, "link")
    return session


def sign_in_user(ctx: Context, principal: Principal) -> Session:
    """A session for an admin signed in through the tenant's identity provider (OIDC)."""
    assert principal.tenant_id is not None
    session = new_session(ctx, principal, principal.tenant_id, "user")
    _signed_in(ctx, session, "oidc")
    return session


def signed_out(ctx: Context, session: Session) -> None:
    """Ends the session server-side: its row goes, so no copy of the cookie works any more."""
    actor = Actor("user" if session.kind == "user" else "token", session.subject, session.name)
    with ctx.db.write() as conn:
        repository.delete_session(conn, session.tenant_id, _session_hash(session))
        audit.record(
            conn,
            ctx.as_actor(actor, ctx.request_id),
            session.tenant_id,
            "admin.signed_out",
            audit.Target("portal", None, "admin portal"),
        )
