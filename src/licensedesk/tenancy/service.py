"""Tenants: customer organisations. Every other object but the catalog belongs to exactly one."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from licensedesk import fields
from licensedesk.audit import service as audit
from licensedesk.context import Context
from licensedesk.errors import Duplicate, NotFound
from licensedesk.pagination import Page, check_limit, decode_cursor, encode_cursor
from licensedesk.tenancy import repository


@dataclass
class Tenant:
    id: str
    slug: str
    name: str
    external_tenant_id: str | None
    issuer: str | None
    jwks_uri: str | None
    created_at: datetime


def _tenant(row: Any) -> Tenant:
    return Tenant(
        row.id, row.slug, row.name, row.external_tenant_id, row.issuer, row.jwks_uri, row.created_at
    )


def create_tenant(
    ctx: Context,
    slug: str,
    name: str,
    *,
    external_tenant_id: str | None = None,
    issuer: str | None = None,
    jwks_uri: str | None = None,
) -> Tenant:
    with ctx.db.write() as conn:
        return create_tenant_in(
            conn, ctx, slug, name, external_tenant_id=external_tenant_id, issuer=issuer, jwks_uri=jwks_uri
        )


def create_tenant_in(
    conn: Connection,
    ctx: Context,
    slug: str,
    name: str,
    *,
    external_tenant_id: str | None = None,
    issuer: str | None = None,
    jwks_uri: str | None = None,
) -> Tenant:
    """Create a tenant inside the caller's transaction (the marketplace creates one with its purchase)."""
    slug = fields.slug(slug)
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "slug": slug,
        "name": fields.text(name, "name", max_length=200),
        "external_tenant_id": fields.optional_text(external_tenant_id, "externalTenantId", max_length=200),
        "issuer": fields.url(issuer, "issuer"),
        "jwks_uri": fields.url(jwks_uri, "jwksUri"),
        "created_at": ctx.clock.now(),
    }
    values["updated_at"] = values["created_at"]
    if repository.by_slug(conn, slug) is not None:
        raise Duplicate("tenant", "slug", slug)
    if values["external_tenant_id"] and repository.by_external_id(conn, values["external_tenant_id"]):
        raise Duplicate("tenant", "externalTenantId", values["external_tenant_id"])
    _check_issuer_free(conn, values["issuer"], None)
    try:
        with conn.begin_nested():
            repository.insert_tenant(conn, **values)
    except IntegrityError as exc:
        raise Duplicate("tenant", "slug or externalTenantId", slug) from exc
    audit.record(
        conn,
        ctx,
        values["id"],
        "tenant.created",
        audit.Target("tenant", values["id"], slug),
        details={"name": values["name"]},
    )
    return _tenant(repository.by_ref(conn, values["id"]))


def _check_issuer_free(conn: Connection, issuer: str | None, tenant_id: str | None) -> None:
    """An identity provider's issuer belongs to one tenant: its admins' tokens must name one tenant, and
    another tenant must not be able to claim them."""
    if issuer and any(row.id != tenant_id for row in repository.by_issuer(conn, issuer)):
        raise Duplicate("tenant", "issuer", issuer)


def resolve(conn: Connection, ref: str) -> Tenant:
    row = repository.by_ref(conn, ref)
    if row is None:
        raise NotFound("tenant", ref)
    return _tenant(row)


def get_tenant(ctx: Context, ref: str) -> Tenant:
    with ctx.db.read() as conn:
        return resolve(conn, ref)


def find_by_external_id(ctx: Context, external_tenant_id: str) -> Tenant | None:
    with ctx.db.read() as conn:
        row = repository.by_external_id(conn, external_tenant_id)
    return _tenant(row) if row else None


def list_tenants(ctx: Context, *, cursor: str | None = None, limit: int | None = None) -> Page[Tenant]:
    limit = check_limit(limit)
    key = decode_cursor(cursor, ("str",))
    with ctx.db.read() as conn:
        rows = repository.page(conn, str(key[0]) if key else None, limit + 1)
    items = [_tenant(r) for r in rows[:limit]]
    return Page(items, encode_cursor(items[-1].slug) if len(rows) > limit else None)


UNSET: Any = object()


def update_tenant(
    ctx: Context,
    ref: str,
    *,
    name: str = UNSET,
    external_tenant_id: str | None = UNSET,
    issuer: str | None = UNSET,
    jwks_uri: str | None = UNSET,
) -> Tenant:
    with ctx.db.write() as conn:
        tenant = resolve(conn, ref)
        values: dict[str, Any] = {}
        if name is not UNSET:
            values["name"] = fields.text(name, "name", max_length=200)
        if external_tenant_id is not UNSET:
            ext = fields.optional_text(external_tenant_id, "externalTenantId", max_length=200)
            other = repository.by_external_id(conn, ext) if ext else None
            if other is not None and other.id != tenant.id:
                raise Duplicate("tenant", "externalTenantId", ext)
            values["external_tenant_id"] = ext
        if issuer is not UNSET:
            values["issuer"] = fields.url(issuer, "issuer")
            _check_issuer_free(conn, values["issuer"], tenant.id)
        if jwks_uri is not UNSET:
            values["jwks_uri"] = fields.url(jwks_uri, "jwksUri")
        if values:
            values["updated_at"] = ctx.clock.now()
            repository.update_tenant(conn, tenant.id, **values)
            audit.record(
                conn,
                ctx,
                tenant.id,
                "tenant.updated",
                audit.Target("tenant", tenant.id, tenant.slug),
                details={k: v for k, v in values.items() if k != "updated_at"},
            )
        return resolve(conn, tenant.id)


def tenants_by_issuer(ctx: Context, issuer: str) -> list[Tenant]:
    with ctx.db.read() as conn:
        return [_tenant(r) for r in repository.by_issuer(conn, issuer)]
