"""Fixtures: the same tests run on SQLite and on PostgreSQL.

PostgreSQL comes from LICENSEDESK_TEST_POSTGRES_URL (e.g. postgresql://postgres@127.0.0.1:5432/postgres);
each test run creates its own database and drops it after. Without the URL the PostgreSQL cases skip,
unless LICENSEDESK_REQUIRE_ALL_BACKENDS=1, which turns that skip into a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from licensedesk.clock import TickingClock
from licensedesk.context import Context
from licensedesk.db.engine import Database, normalize_url
from licensedesk.db.migrate import upgrade
from licensedesk.db.schema import metadata

# Rate limits are per process and count every request: the suite's own traffic (hundreds of requests a
# second with one token, hundreds of refused tokens from one test client) would meet them. They are off
# for the suite, here and in the server processes it starts; tests/api/test_rate_limits.py turns them on.
for _limit in (
    "CHECK_RATE_PER_TOKEN",
    "CHECK_RATE_PER_ADDRESS",
    "API_RATE_PER_CREDENTIAL",
    "SCIM_RATE_PER_CREDENTIAL",
    "AUTH_FAILURES_PER_ADDRESS",
):
    os.environ.setdefault(f"LICENSEDESK_{_limit}", "0")
# The suite's webhook receivers listen on loopback, which webhooks may not reach unless allowed;
# tests/webhooks/test_addresses.py checks the refusal with it off.
os.environ.setdefault("LICENSEDESK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "1")

PG_URL = os.environ.get("LICENSEDESK_TEST_POSTGRES_URL")
REQUIRE_ALL = os.environ.get("LICENSEDESK_REQUIRE_ALL_BACKENDS") == "1"


def _admin_url(url: str) -> str:
    return normalize_url(url)


class PostgresServer:
    """A throw-away database on the test server, migrated once; tests truncate it between them."""

    def __init__(self, url: str) -> None:
        self.admin_url = _admin_url(url)
        self.name = f"licensedesk_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        base = self.admin_url.rsplit("/", 1)[0]
        self.url = f"{base}/{self.name}"
        db = Database(self.url)
        upgrade(db)
        db.dispose()

    def new_database(self, name: str | None = None) -> str:
        """Another empty database on the server (for tests of migrations and processes)."""
        name = name or f"licensedesk_test_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self._extra = [*getattr(self, "_extra", []), name]
        return f"{self.admin_url.rsplit('/', 1)[0]}/{name}"

    def drop(self) -> None:
        admin = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in [self.name, *getattr(self, "_extra", [])]:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer | None]:
    if not PG_URL:
        yield None
        return
    server = PostgresServer(PG_URL)
    yield server
    server.drop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


def require_postgres(server: PostgresServer | None) -> PostgresServer:
    if server is None:
        if REQUIRE_ALL:
            pytest.fail("LICENSEDESK_REQUIRE_ALL_BACKENDS=1 but LICENSEDESK_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL: set LICENSEDESK_TEST_POSTGRES_URL to run these cases")
    return server


def _truncate(db: Database) -> None:
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated, empty database of the backend under test."""
    if backend == "sqlite":
        path = tmp_path / "licensedesk.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    server = require_postgres(request.getfixturevalue("postgres_server"))
    db = Database(server.url)
    _truncate(db)
    db.dispose()
    yield server.url


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


@pytest.fixture
def ctx(db: Database, clock: TickingClock) -> Context:
    return Context(db=db, clock=clock)
