"""An admin's change through one server process shows in the check of another within a second
(SQLite: the change counter; PostgreSQL: LISTEN/NOTIFY), with real processes on one database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from licensedesk.auth import service as auth
from licensedesk.checks.service import Checker
from licensedesk.clock import SystemClock
from licensedesk.context import Context
from licensedesk.db.changes import ChangeFeed
from licensedesk.db.engine import Database
from licensedesk.db.migrate import upgrade
from tests.cli.test_serve_end_to_end import free_port
from tests.world import PLAN, make_world

BIN = Path(sys.executable).parent / "licensedesk"

pytestmark = pytest.mark.serial  # "within 1 s" holds the machine to a bound in time


def start(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LICENSEDESK_DATABASE_URL": url,
        "LICENSEDESK_DEV_ISSUER": "1",
        "LICENSEDESK_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LICENSEDESK_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/v1/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "server exited"
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.1)


@pytest.fixture
def shared_url(backend, tmp_path, request):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    from tests.conftest import require_postgres

    server = require_postgres(request.getfixturevalue("postgres_server"))
    return server.new_database()


def test_a_direct_assignment_through_one_process_shows_in_the_check_of_another_within_a_second(shared_url):
    db = Database(shared_url)
    upgrade(db)
    ctx = Context(db=db, clock=SystemClock())
    w = make_world(ctx, "contoso")
    w.buy(5)
    w.user("ann")
    admin = auth.create_token(ctx, "global_admin", tenant_ref=w.tenant)[1]
    user_token = Checker(ctx, ChangeFeed(db), public_url="http://cli", dev_issuer=True).mint_dev_token(
        w.tenant, "ann@contoso.com", "innofalls-charts"
    )
    port_a, port_b = free_port(), free_port()
    a, b = start(shared_url, port_a), start(shared_url, port_b)
    try:
        base_a, base_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        wait_ready(base_a, a)
        wait_ready(base_b, b)
        api = httpx.Client(
            base_url=f"{base_a}/v1/tenants/contoso/licenses/{PLAN}",
            headers={"Authorization": f"Bearer {admin}"},
        )
        check = httpx.Client(base_url=base_b, headers={"Authorization": f"Bearer {user_token}"})

        def plans() -> list:
            r = check.get("/v1/licensing/innofalls-charts/servicePlans")
            assert r.status_code == 200, r.text
            return r.json()["plans"]

        assert plans() == []  # B has the answer cached now
        delays = []
        for i in range(6):
            action, expected = (
                ("assign", [{"spIdentifier": "innofalls.charts.pro", "state": 1}])
                if i % 2 == 0
                else ("unassign", [])
            )
            r = api.post(f"/{action}", json={"users": ["ann@contoso.com"]})
            assert r.status_code == 200, r.text
            done = time.monotonic()
            while plans() != expected:
                assert time.monotonic() - done < 1.0, f"{action} not seen by the other process within 1 s"
                time.sleep(0.01)
            delays.append(time.monotonic() - done)
        assert max(delays) < 1.0
    finally:
        for proc in (a, b):
            proc.terminate()
        for proc in (a, b):
            proc.wait(timeout=15)
        db.dispose()
