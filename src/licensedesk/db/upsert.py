"""INSERT ... ON CONFLICT for the two dialects (their insert() constructs differ only by import)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_for(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def greatest_name(conn: Connection) -> str:
    return "greatest" if conn.dialect.name == "postgresql" else "max"
