"""The check's slow path when the database cannot be reached, without a database server: a PostgreSQL URL
on a port nobody listens on (connection refused), and a connection psycopg knows to be closed. It answers
503 `database_unavailable` with Retry-After (the JS client's "could not tell"), never 500 nor 401. The
whole scenario, with a real server and a real outage, is test_database_outage.py."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from sqlalchemy.exc import InterfaceError

from licensedesk.checks.routes import respond
from licensedesk.checks.service import Checker
from licensedesk.context import Context
from licensedesk.db.changes import ChangeFeed
from licensedesk.db.engine import Database


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: connections are refused


@pytest.fixture
def checker() -> Iterator[Checker]:
    db = Database(f"postgresql://postgres@127.0.0.1:{closed_port()}/licensedesk")
    ctx = Context(db=db)
    yield Checker(ctx, ChangeFeed(db), public_url="http://127.0.0.1", dev_issuer=True)
    db.dispose()


def assert_unavailable(result: tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]) -> None:
    status, body, headers = result
    names = dict(headers)
    assert status == 503
    assert names[b"content-type"] == b"application/problem+json"
    assert names[b"retry-after"] == b"1"
    assert names[b"access-control-allow-origin"] == b"*"  # a visual in another origin can read it
    problem = json.loads(body)
    assert (problem["status"], problem["code"], problem["title"]) == (
        503,
        "database_unavailable",
        "Service unavailable",
    )


def test_a_refused_database_connection_is_a_503_problem_not_a_500(checker: Checker) -> None:
    assert_unavailable(respond(checker, "Bearer some.user.token", "innofalls-charts", None))


def test_a_closed_connection_is_a_503_problem_too(checker: Checker, monkeypatch: pytest.MonkeyPatch) -> None:
    def closed(*_args: object) -> None:
        raise InterfaceError("SELECT 1", {}, Exception("the connection is closed"))

    monkeypatch.setattr(checker, "service_plans", closed)
    assert_unavailable(respond(checker, "Bearer some.user.token", "innofalls-charts", None))


def test_without_a_token_it_is_still_401_before_any_database_access(checker: Checker) -> None:
    status, _body, _headers = respond(checker, None, "innofalls-charts", None)
    assert status == 401
