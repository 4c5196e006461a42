"""Engines and transactions on SQLite (WAL, foreign keys, busy timeout) and PostgreSQL (psycopg 3).

`Database.write()` opens a write transaction: `BEGIN IMMEDIATE` on SQLite, so that writers queue for the
one write lock up front instead of failing on upgrade; PostgreSQL writers lock the rows they count
(see licensing/repository.py). `Database.read()` opens a plain transaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool


def normalize_url(url: str) -> str:
    """Accept `postgresql://` and `postgres://` as psycopg 3 URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class Database:
    def __init__(self, url: str, *, pool_size: int = 10, echo: bool = False) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(self.url, echo=echo)
        elif self.dialect == "postgresql":
            self.engine = create_engine(
                self.url,
                echo=echo,
                pool_size=pool_size,
                max_overflow=2 * pool_size,
                pool_pre_ping=True,
                connect_args={"connect_timeout": 10},
            )
        else:
            raise ValueError(
                f"unsupported database {self.dialect!r}: use sqlite:/// or postgresql+psycopg://"
            )

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction. Callbacks registered with `before_commit` run, in order, as its last
        statements (not if it fails); those registered with `after_commit` once it has committed."""
        callbacks: list[Callable[[], None]] = []
        last: list[Callable[[], None]] = []
        with self.engine.connect() as conn:
            conn = conn.execution_options(licensedesk_write=True)
            conn.info["after_commit"] = callbacks
            conn.info["before_commit"] = last
            conn.info["transaction"] = {}  # state of this one transaction (the connection is pooled)
            try:
                with conn.begin():
                    yield conn
                    for step in last:
                        step()
            finally:
                conn.info.pop("after_commit", None)
                conn.info.pop("before_commit", None)
                conn.info.pop("transaction", None)
        for callback in dict.fromkeys(callbacks):
            callback()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def optimize(self) -> None:
        """Refresh the query planner's statistics where they are stale (SQLite; PostgreSQL's autovacuum
        does it by itself). Sampled, so it stays cheap on large databases."""
        if not self.is_sqlite:
            return
        with self.engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("PRAGMA optimize=0x10002")

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_engine(url: str, *, echo: bool) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    memory = database in ("", ":memory:")
    if not memory:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {"echo": echo, "connect_args": {"check_same_thread": False, "timeout": 30}}
    if memory:
        # an in-memory database lives in one connection
        from sqlalchemy.pool import StaticPool

        kwargs["poolclass"] = StaticPool
    elif os.environ.get("LICENSEDESK_SQLITE_NULLPOOL"):
        kwargs["poolclass"] = NullPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # we issue BEGIN ourselves (below), so the driver must not
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("licensedesk_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def before_commit(conn: Connection, step: Callable[[], None]) -> None:
    """Run `step` as the last work of the write transaction of `conn` (at once outside one)."""
    steps = conn.info.get("before_commit")
    if steps is None:
        step()
    else:
        steps.append(step)


def after_commit(conn: Connection, callback: Callable[[], None]) -> None:
    """Run `callback` after the write transaction of `conn` commits (at once outside one)."""
    callbacks = conn.info.get("after_commit")
    if callbacks is None:
        callback()
    else:
        callbacks.append(callback)
