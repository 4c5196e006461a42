"""Queries of the catalog (products and plans), which all tenants share."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from licensedesk.db.schema import plans, products


def insert_product(conn: Connection, **values: Any) -> None:
    conn.execute(insert(products).values(**values))


def insert_plan(conn: Connection, **values: Any) -> None:
    conn.execute(insert(plans).values(**values))


def product(conn: Connection, product_id: str) -> Any:
    return conn.execute(select(products).where(products.c.id == product_id)).first()


def product_by_audience(conn: Connection, audience: str) -> Any:
    return conn.execute(select(products).where(products.c.audience == audience)).first()


def all_products(conn: Connection) -> list[Any]:
    return list(conn.execute(select(products).order_by(products.c.id)))


def plan(conn: Connection, plan_id: str) -> Any:
    return conn.execute(select(plans).where(plans.c.id == plan_id)).first()


def all_plans(conn: Connection, product_id: str | None = None) -> list[Any]:
    stmt = select(plans).order_by(plans.c.product_id, plans.c.id)
    if product_id is not None:
        stmt = stmt.where(plans.c.product_id == product_id)
    return list(conn.execute(stmt))


def plan_by_sp_identifier(conn: Connection, product_id: str, sp_identifier: str) -> Any:
    return conn.execute(
        select(plans).where(plans.c.product_id == product_id, plans.c.sp_identifier == sp_identifier)
    ).first()
