"""Queries of API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from licensedesk.db.schema import api_tokens


def insert_token(conn: Connection, **values: Any) -> None:
    conn.execute(insert(api_tokens).values(**values))


def by_hash(conn: Connection, secret_hash: str) -> Any:
    return conn.execute(select(api_tokens).where(api_tokens.c.secret_hash == secret_hash)).first()


def token(conn: Connection, tenant_id: str, token_id: str) -> Any:
    return conn.execute(
        select(api_tokens).where(api_tokens.c.tenant_id == tenant_id, api_tokens.c.id == token_id)
    ).first()


def tokens(conn: Connection, tenant_id: str, after: tuple[datetime, str] | None, limit: int) -> list[Any]:
    stmt = (
        select(api_tokens)
        .where(api_tokens.c.tenant_id == tenant_id)
        .order_by(api_tokens.c.created_at, api_tokens.c.id)
        .limit(limit)
    )
    if after is not None:
        from sqlalchemy import tuple_

        stmt = stmt.where(tuple_(api_tokens.c.created_at, api_tokens.c.id) > tuple_(*after))
    return list(conn.execute(stmt))


def revoke(conn: Connection, tenant_id: str, token_id: str, at: datetime) -> None:
    conn.execute(
        update(api_tokens)
        .where(api_tokens.c.tenant_id == tenant_id, api_tokens.c.id == token_id)
        .values(revoked_at=at)
    )


def touch(conn: Connection, tenant_id: str, token_id: str, at: datetime) -> None:
    conn.execute(
        update(api_tokens)
        .where(api_tokens.c.tenant_id == tenant_id, api_tokens.c.id == token_id)
        .values(last_used_at=at)
    )


def revoke_named(conn: Connection, tenant_id: str, name: str, at: datetime) -> int:
    result = conn.execute(
        update(api_tokens)
        .where(
            api_tokens.c.tenant_id == tenant_id, api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None)
        )
        .values(revoked_at=at)
    )
    return result.rowcount or 0
