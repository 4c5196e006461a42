"""API tokens: `ld_` + 32 random bytes, shown once, stored only as SHA-256, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from licensedesk import fields
from licensedesk.audit import service as audit
from licensedesk.auth import repository
from licensedesk.auth.roles import OPERATOR, ROLES, Principal
from licensedesk.context import Context
from licensedesk.db import changes
from licensedesk.db.schema import SYSTEM_TENANT
from licensedesk.errors import NotFound, ValidationFailed
from licensedesk.pagination import Page, check_limit, decode_cursor, encode_cursor
from licensedesk.tenancy import service as tenancy

PREFIX = "ld_"


@dataclass
class ApiToken:
    id: str
    name: str
    role: str
    tenant_id: str | None
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    created_by: str | None


def _token(row: Any) -> ApiToken:
    return ApiToken(
        row.id,
        row.name,
        row.role,
        None if row.tenant_id == SYSTEM_TENANT else row.tenant_id,
        row.prefix,
        row.created_at,
        row.last_used_at,
        row.revoked_at,
        row.created_by,
    )


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    ctx: Context, role: str, *, tenant_ref: str | None = None, name: str | None = None
) -> tuple[ApiToken, str]:
    """Make a token; answers it and its secret (which is not kept: it cannot be shown again)."""
    if role not in ROLES:
        raise ValidationFailed(f"role must be one of {', '.join(ROLES)}", field="role")
    if (role == OPERATOR) != (tenant_ref is None):
        raise ValidationFailed(
            "an operator token takes no tenant; every other role needs one",
            field="tenant" if tenant_ref else "role",
        )
    name = fields.text(name or f"{role} token", "name", max_length=200)
    secret = PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    with ctx.db.write() as conn:
        tenant_id = tenancy.resolve(conn, tenant_ref).id if tenant_ref is not None else SYSTEM_TENANT
        token_id = str(uuid.uuid4())
        now = ctx.clock.now()
        repository.insert_token(
            conn,
            tenant_id=tenant_id,
            id=token_id,
            name=name,
            role=role,
            secret_hash=hash_secret(secret),
            prefix=secret[: len(PREFIX) + 6],
            created_by=ctx.actor.name,
            created_at=now,
        )
        audit.record(
            conn,
            ctx,
            tenant_id,
            "token.created",
            audit.Target("token", token_id, name),
            details={"role": role},
            at=now,
        )
        return _token(repository.token(conn, tenant_id, token_id)), secret


def list_tokens(
    ctx: Context, tenant_ref: str | None, *, cursor: str | None = None, limit: int | None = None
) -> Page[ApiToken]:
    limit = check_limit(limit)
    after = decode_cursor(cursor, ("time", "str"))
    with ctx.db.read() as conn:
        tenant_id = tenancy.resolve(conn, tenant_ref).id if tenant_ref is not None else SYSTEM_TENANT
        rows = repository.tokens(conn, tenant_id, after, limit + 1)
    items = [_token(r) for r in rows[:limit]]
    nxt = encode_cursor(items[-1].created_at.isoformat(), items[-1].id) if len(rows) > limit else None
    return Page(items, nxt)


def revoke_token(ctx: Context, tenant_ref: str | None, token_id: str) -> None:
    with ctx.db.write() as conn:
        tenant_id = tenancy.resolve(conn, tenant_ref).id if tenant_ref is not None else SYSTEM_TENANT
        row = repository.token(conn, tenant_id, token_id)
        if row is None or row.revoked_at is not None:
            raise NotFound("token", token_id)
        repository.revoke(conn, tenant_id, token_id, ctx.clock.now())
        audit.record(conn, ctx, tenant_id, "token.revoked", audit.Target("token", token_id, row.name))


def revoke_tokens_named(ctx: Context, tenant_ref: str | None, name: str) -> int:
    with ctx.db.write() as conn:
        tenant_id = tenancy.resolve(conn, tenant_ref).id if tenant_ref is not None else SYSTEM_TENANT
        n = repository.revoke_named(conn, tenant_id, name, ctx.clock.now())
        if n:
            changes.bump(conn, tenant_id)  # processes that verified them must look them up again
        return n


_touched: dict[str, float] = {}
_touch_lock = threading.Lock()
TOUCH_EVERY_SECONDS = 60.0


# Tokens verified by this process, valid while their tenant's change version is the one read before the
# token was looked up: revoking a token is a change of its tenant (audited), which every process learns at
# once for its own commits and within a second for others' (db/changes.py), as the check's caches do.
_tenant_of: dict[str, str] = {}  # digest -> the token's tenant (never changes)
_verified: dict[str, tuple[Any, Any]] = {}  # digest -> (token row, tenant version before its lookup)
_MAX_CACHED = 10_000


def authenticate(
    ctx: Context, secret: str, *, versions: Callable[[str], Any] | None = None
) -> Principal | None:
    """The principal of an API token secret, or None (unknown, malformed or revoked). With `versions` (a
    change feed's), a token verified before is not looked up again while its tenant has not changed."""
    if not secret.startswith(PREFIX) or len(secret) > 100:
        return None
    digest = hash_secret(secret)
    row = None
    version = None
    tenant_id = _tenant_of.get(digest)
    if versions is not None and tenant_id is not None:
        version = versions(tenant_id)  # read before the lookup below, so a revocation after it is seen
        hit = _verified.get(digest)
        if hit is not None and hit[1] == version:
            row = hit[0]
    if row is None:
        with ctx.db.read() as conn:
            row = repository.by_hash(conn, digest)
        # the lookup is by hash; compare the stored hash in constant time all the same
        if row is None or not hmac.compare_digest(row.secret_hash, digest) or row.revoked_at is not None:
            _verified.pop(digest, None)
            return None
        if len(_tenant_of) >= _MAX_CACHED or len(_verified) >= _MAX_CACHED:
            _tenant_of.clear()
            _verified.clear()
        _tenant_of[digest] = row.tenant_id
        if version is not None:
            _verified[digest] = (row, version)
    _touch(ctx, row.tenant_id, row.id)
    return Principal(
        kind="token",
        id=row.id,
        name=row.name,
        roles=frozenset({row.role}),
        tenant_id=None if row.role == OPERATOR else row.tenant_id,
        token_id=row.id,
    )


def _touch(ctx: Context, tenant_id: str, token_id: str) -> None:
    """Record when a token was last used, at most once a minute per token and process."""
    now = time.monotonic()
    with _touch_lock:
        if now - _touched.get(token_id, -1e9) < TOUCH_EVERY_SECONDS:
            return
        _touched[token_id] = now
    with ctx.db.write() as conn:
        repository.touch(conn, tenant_id, token_id, ctx.clock.now())


def token_principal(ctx: Context, tenant_id: str | None, token_id: str) -> Principal | None:
    """The principal of a token by its id (the portal's sessions keep the id, never the secret), or None
    once it is revoked or gone."""
    with ctx.db.read() as conn:
        row = repository.token(conn, tenant_id or SYSTEM_TENANT, token_id)
    if row is None or row.revoked_at is not None:
        return None
    return Principal(
        kind="token",
        id=row.id,
        name=row.name,
        roles=frozenset({row.role}),
        tenant_id=None if row.role == OPERATOR else row.tenant_id,
        token_id=row.id,
    )
