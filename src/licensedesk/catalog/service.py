"""The vendor's catalog: products and their plans (SKUs), shared by all tenants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from licensedesk import fields
from licensedesk.audit import service as audit
from licensedesk.catalog import repository
from licensedesk.context import Context
from licensedesk.db.schema import SYSTEM_TENANT
from licensedesk.errors import Duplicate, NotFound, ValidationFailed


@dataclass
class Product:
    id: str
    name: str
    audience: str
    created_at: datetime


@dataclass
class Plan:
    id: str
    product_id: str
    name: str
    sp_identifier: str
    trial_days: int
    grace_days: int | None
    suspension_days: int | None
    created_at: datetime


def _product(row: Any) -> Product:
    return Product(row.id, row.name, row.audience, row.created_at)


def _plan(row: Any) -> Plan:
    return Plan(
        row.id,
        row.product_id,
        row.name,
        row.sp_identifier,
        row.trial_days,
        row.grace_days,
        row.suspension_days,
        row.created_at,
    )


def create_product(ctx: Context, product_id: str, name: str, audience: str) -> Product:
    product_id = fields.slug(product_id, "id")
    name = fields.text(name, "name", max_length=200)
    audience = fields.text(audience, "audience", max_length=500)
    with ctx.db.write() as conn:
        if repository.product(conn, product_id) is not None:
            raise Duplicate("product", "id", product_id)
        if repository.product_by_audience(conn, audience) is not None:
            raise Duplicate("product", "audience", audience)
        repository.insert_product(
            conn, id=product_id, name=name, audience=audience, created_at=ctx.clock.now()
        )
        audit.record(
            conn,
            ctx,
            SYSTEM_TENANT,
            "product.created",
            audit.Target("product", product_id, name),
            details={"audience": audience},
        )
        return _product(repository.product(conn, product_id))


def _days(value: int | None, field: str, *, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > 3650:
        raise ValidationFailed(f"{field} must be a whole number of days between 0 and 3650", field=field)
    return value


def create_plan(
    ctx: Context,
    product_id: str,
    plan_id: str,
    name: str,
    sp_identifier: str,
    *,
    trial_days: int = 0,
    grace_days: int | None = None,
    suspension_days: int | None = None,
) -> Plan:
    plan_id = fields.slug(plan_id, "id")
    name = fields.text(name, "name", max_length=200)
    sp_identifier = fields.text(sp_identifier, "spIdentifier", max_length=200)
    values = {
        "id": plan_id,
        "product_id": product_id,
        "name": name,
        "sp_identifier": sp_identifier,
        "trial_days": _days(trial_days, "trialDays", optional=False),
        "grace_days": _days(grace_days, "graceDays", optional=True),
        "suspension_days": _days(suspension_days, "suspensionDays", optional=True),
        "created_at": ctx.clock.now(),
    }
    with ctx.db.write() as conn:
        if repository.product(conn, product_id) is None:
            raise NotFound("product", product_id)
        if repository.plan(conn, plan_id) is not None:
            raise Duplicate("plan", "id", plan_id)
        if repository.plan_by_sp_identifier(conn, product_id, sp_identifier) is not None:
            raise Duplicate("plan", "spIdentifier", sp_identifier)
        repository.insert_plan(conn, **values)
        audit.record(
            conn,
            ctx,
            SYSTEM_TENANT,
            "plan.created",
            audit.Target("plan", plan_id, name),
            plan_id=plan_id,
            details={"productId": product_id, "spIdentifier": sp_identifier},
        )
        return _plan(repository.plan(conn, plan_id))


def list_products(ctx: Context) -> list[Product]:
    with ctx.db.read() as conn:
        return [_product(r) for r in repository.all_products(conn)]


def get_product(ctx: Context, product_id: str) -> Product:
    with ctx.db.read() as conn:
        row = repository.product(conn, product_id)
    if row is None:
        raise NotFound("product", product_id)
    return _product(row)


def list_plans(ctx: Context, product_id: str | None = None) -> list[Plan]:
    with ctx.db.read() as conn:
        return [_plan(r) for r in repository.all_plans(conn, product_id)]


def plan_in(conn: Connection, plan_id: str) -> Plan:
    row = repository.plan(conn, plan_id)
    if row is None:
        raise NotFound("plan", plan_id)
    return _plan(row)


def get_plan(ctx: Context, plan_id: str) -> Plan:
    with ctx.db.read() as conn:
        return plan_in(conn, plan_id)


def plans_by_id(conn: Connection) -> dict[str, Plan]:
    return {r.id: _plan(r) for r in repository.all_plans(conn)}


def products_by_id(conn: Connection) -> dict[str, Product]:
    return {r.id: _product(r) for r in repository.all_products(conn)}
