"""PostgreSQL planner settings for the statements inside a `with` block (no-ops on SQLite).

Each is set with `SET LOCAL` semantics (`set_config(..., true)`), so it never outlives the transaction, and
put back to the value it had when the block ends normally. When the block raises, the transaction is
going to be rolled back, which undoes the setting anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from sqlalchemy import Connection, text


@contextmanager
def pg_setting(conn: Connection, name: str, value: str, *, when: bool = True) -> Iterator[None]:
    if not when or conn.dialect.name != "postgresql":
        yield
        return
    previous = conn.execute(text("SELECT current_setting(:n)"), {"n": name}).scalar_one()
    conn.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})
    yield
    conn.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": previous})


def no_nested_loops(conn: Connection, *, when: bool = True) -> AbstractContextManager[None]:
    """Hash or merge joins only: for statements over rows this very transaction wrote (or a bulk load
    not yet analyzed), whose estimates make a loop over one side per row of the other look cheap."""
    return pg_setting(conn, "enable_nestloop", "off", when=when)


def custom_plans(conn: Connection, *, when: bool = True) -> AbstractContextManager[None]:
    """Plan each execution for its own parameters and the table's size now. psycopg prepares a statement
    run five times on a connection, and PostgreSQL may then keep one generic plan for it; one made while
    a table was small (a group nesting built level by level) picks an index by a tie and keeps it as the
    table grows (the nesting closure: seconds per statement at a depth of a few hundred)."""
    return pg_setting(conn, "plan_cache_mode", "force_custom_plan", when=when)
