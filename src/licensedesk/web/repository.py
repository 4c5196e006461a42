"""The portal's own tables: one-time sign-in links, live sessions and the key its session cookies are signed
with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from licensedesk.db.schema import SYSTEM_TENANT, portal_keys, portal_sessions, portal_sign_in_links


def key(conn: Connection, purpose: str) -> str | None:
    row = conn.execute(
        select(portal_keys.c.secret).where(
            portal_keys.c.tenant_id == SYSTEM_TENANT, portal_keys.c.purpose == purpose
        )
    ).first()
    return None if row is None else str(row.secret)


def insert_key(conn: Connection, purpose: str, secret: str, at: datetime) -> None:
    conn.execute(
        insert(portal_keys).values(tenant_id=SYSTEM_TENANT, purpose=purpose, secret=secret, created_at=at)
    )


def insert_link(conn: Connection, **values: Any) -> None:
    conn.execute(insert(portal_sign_in_links).values(**values))


def link_by_hash(conn: Connection, secret_hash: str) -> Any:
    return conn.execute(
        select(portal_sign_in_links).where(portal_sign_in_links.c.secret_hash == secret_hash)
    ).first()


def use_link(conn: Connection, tenant_id: str, link_id: str, at: datetime) -> bool:
    """Mark a link used; False when another request used it first."""
    done = conn.execute(
        update(portal_sign_in_links)
        .where(
            portal_sign_in_links.c.tenant_id == tenant_id,
            portal_sign_in_links.c.id == link_id,
            portal_sign_in_links.c.used_at.is_(None),
        )
        .values(used_at=at)
    )
    return done.rowcount == 1


def insert_session(conn: Connection, **values: Any) -> None:
    conn.execute(insert(portal_sessions).values(**values))


def session_live(conn: Connection, tenant_id: str, session_hash: str, at: datetime) -> bool:
    row = conn.execute(
        select(portal_sessions.c.expires_at).where(
            portal_sessions.c.tenant_id == tenant_id, portal_sessions.c.id == session_hash
        )
    ).first()
    return row is not None and row.expires_at > at


def delete_session(conn: Connection, tenant_id: str, session_hash: str) -> None:
    conn.execute(
        delete(portal_sessions).where(
            portal_sessions.c.tenant_id == tenant_id, portal_sessions.c.id == session_hash
        )
    )


def delete_expired_sessions(conn: Connection, at: datetime) -> int:
    """Every tenant's expired sessions (housekeeping; by the expiry index)."""
    return conn.execute(delete(portal_sessions).where(portal_sessions.c.expires_at <= at)).rowcount
