"""Issue 8, item 4: the database goes away under a running server, and comes back.

A real `licensedesk serve` process reaches PostgreSQL through a TCP proxy that the test cuts (every
connection closed, new ones refused) and later restores; the shared PostgreSQL itself is never stopped.
While a steady stream of admin writes runs (in another tenant, so that the checked tenant's cached answers
stay current), the test shows:

- during the outage the run-time check answers a token and answer it has cached from its cache (200 with
  the right plans), and one it has not with 503 (never 401, never 500, never a 200 "unlicensed"); the
  admin API answers 503 problem documents with Retry-After; /v1/ready answers 503; nothing hangs;
- once the proxy is back, everything recovers by itself within seconds, without restarting the server:
  the check's slow path, the admin API, readiness, the change feed (a change written straight to the
  database, not through the server, reaches the server's check) and the server's job worker (a group
  assignment is processed);
- every write that got a 2xx (before, during or after the outage) is in the database.

SQLite is a file in the server's own process: it has no outage of this kind (see RELIABILITY.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from licensedesk.auth import service as auth
from licensedesk.checks.service import Checker
from licensedesk.clock import SystemClock
from licensedesk.context import Context
from licensedesk.db.changes import ChangeFeed
from licensedesk.db.engine import Database
from licensedesk.db.migrate import upgrade
from licensedesk.db.schema import users
from licensedesk.licensing import service as licensing
from tests.cli.test_serve_end_to_end import free_port
from tests.conftest import require_postgres
from tests.reliability.tcp_proxy import CuttableProxy
from tests.world import PLAN, make_world

pytestmark = [pytest.mark.slow, pytest.mark.serial]

BIN = Path(sys.executable).parent / "licensedesk"
JS_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js" / "index.js"
NODE = shutil.which("node")
# the JS client (clients/js) as a visual uses it: one fresh manager per user, a real fetch
JS_CHECK = """
import { createLicenseManager } from %s;
const [baseUrl, ...tokens] = process.argv.slice(2);
const out = [];
for (const token of tokens) {
  const m = createLicenseManager({ baseUrl, productId: %s, getToken: () => token });
  const r = await m.getAvailableServicePlans();
  out.push({ ...r, error: r.error ? { code: r.error.code, status: r.error.status } : null });
}
console.log(JSON.stringify(out));
"""
PRODUCT = "innofalls-charts"
SERVICE_PLANS = f"/v1/licensing/{PRODUCT}/servicePlans"
PRO = [{"spIdentifier": "innofalls.charts.pro", "state": 1}]
OUTAGE_SECONDS = 6.0
RECOVERY_BAR_SECONDS = 10.0  # everything answers again within this after the database is back
ANSWER_BAR_SECONDS = 5.0  # no request waits longer than this, outage or not


@pytest.fixture
def database(request: pytest.FixtureRequest) -> Iterator[str]:
    server = require_postgres(request.getfixturevalue("postgres_server"))
    yield server.new_database()


@pytest.fixture
def proxy() -> Iterator[CuttableProxy]:
    p = CuttableProxy(("127.0.0.1", 5432))
    p.start()
    yield p
    p.close()


def through(url: str, port: int) -> str:
    parsed = make_url(url)
    return parsed.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


class Writer(threading.Thread):
    """Creates a user every 50 ms through the admin API and remembers every answer's status."""

    def __init__(self, base: str, token: str, tenant: str) -> None:
        super().__init__(name="admin-writer", daemon=True)
        self.client = httpx.Client(
            base_url=f"{base}/v1/tenants/{tenant}", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.results: list[tuple[float, str, int, float]] = []  # (at, upn, status, seconds)
        self.problems: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            upn = f"writer{n:05d}@fabrikam.com"
            started = time.monotonic()
            try:
                r = self.client.post("/users", json={"userPrincipalName": upn, "displayName": f"Writer {n}"})
            except httpx.HTTPError as exc:  # the server must answer, outage or not
                self.problems.append(f"{upn}: {exc!r}")
                continue
            self.results.append((started, upn, r.status_code, time.monotonic() - started))
            if r.status_code not in (201, 503):
                self.problems.append(f"{upn}: {r.status_code} {r.text}")
            elif r.status_code == 503 and not (
                r.headers["content-type"].startswith("application/problem+json")
                and r.json()["code"] == "database_unavailable"
                and "retry-after" in r.headers
            ):
                self.problems.append(f"{upn}: 503 without a problem document: {r.text}")
            self.stop.wait(0.05)


def timed(client: httpx.Client, path: str, **kw: Any) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = client.get(path, **kw)
    return r, time.monotonic() - started


def js_client(tmp_path: Path, base: str, tokens: list[str]) -> list[dict[str, Any]] | None:
    """What the JS client answers for these tokens (None without node, unless all backends are required)."""
    if NODE is None:
        if os.environ.get("LICENSEDESK_REQUIRE_ALL_BACKENDS") == "1":
            pytest.fail("node is not on PATH but LICENSEDESK_REQUIRE_ALL_BACKENDS=1")
        return None
    script = tmp_path / "check.mjs"
    script.write_text(JS_CHECK % (json.dumps(JS_CLIENT.as_uri()), json.dumps(PRODUCT)))
    done = subprocess.run(
        [NODE, str(script), base, *tokens], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


@pytest.mark.timeout(180)
def test_the_check_and_the_admin_api_ride_out_a_database_outage_and_recover_by_themselves(
    database: str, proxy: CuttableProxy, tmp_path: Path
) -> None:
    db = Database(database)
    upgrade(db)
    ctx = Context(db=db, clock=SystemClock())
    contoso = make_world(ctx, "contoso")
    contoso.buy(10)
    ann, carl, dave = contoso.user("ann"), contoso.user("carl"), contoso.user("dave")
    erin = contoso.user("erin")
    sales = contoso.group("Sales", users=[erin])
    licensing.assign(ctx, contoso.tenant, PLAN, users=[ann, carl])
    fabrikam = make_world(ctx, "fabrikam")
    contoso_admin = auth.create_token(ctx, "global_admin", tenant_ref=contoso.tenant)[1]
    fabrikam_admin = auth.create_token(ctx, "global_admin", tenant_ref=fabrikam.tenant)[1]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    minter = Checker(ctx, ChangeFeed(db), public_url=base, dev_issuer=True)
    token = {
        u: minter.mint_dev_token(contoso.tenant, f"{u}@contoso.com", PRODUCT)
        for u in ("ann", "carl", "dave", "erin")
    }

    log = (tmp_path / "server.log").open("wb")
    env = {
        **os.environ,
        "LICENSEDESK_DATABASE_URL": through(database, proxy.port),
        "LICENSEDESK_DEV_ISSUER": "1",
        "LICENSEDESK_PUBLIC_URL": base,
        "LICENSEDESK_LOG_LEVEL": "warning",
    }
    server = subprocess.Popen([str(BIN), "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
    writer: Writer | None = None
    try:
        http = httpx.Client(base_url=base, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                if http.get("/v1/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        admin = httpx.Client(
            base_url=f"{base}/v1/tenants/contoso",
            headers={"Authorization": f"Bearer {contoso_admin}"},
            timeout=30,
        )

        def check(user: str) -> tuple[httpx.Response, float]:
            return timed(http, SERVICE_PLANS, headers={"Authorization": f"Bearer {token[user]}"})

        writer = Writer(base, fabrikam_admin, "fabrikam")
        writer.start()
        # ann (licensed) and dave (not) are asked before the outage: their tokens and answers are cached
        for user, plans in (("ann", PRO), ("dave", [])):
            r, _ = check(user)
            assert (r.status_code, r.json()["plans"]) == (200, plans)
        time.sleep(1.0)
        assert proxy.accepted > 0

        # ------------------------------------------------------------ the outage
        proxy.cut()
        cut_at = time.monotonic()
        slowest = 0.0
        rounds = 0
        while time.monotonic() - cut_at < OUTAGE_SECONDS:
            rounds += 1
            for user, plans in (("ann", PRO), ("dave", [])):
                r, took = check(user)
                slowest = max(slowest, took)
                assert (r.status_code, r.json()["plans"]) == (200, plans), r.text  # from the fresh cache
            r, took = check("carl")  # licensed, never asked: not in the cache
            slowest = max(slowest, took)
            assert r.status_code == 503, r.text  # never 401, never 500, never a 200 "unlicensed"
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "database_unavailable" and "retry-after" in r.headers
            r, took = timed(
                http, f"/v1/licensing/{PRODUCT}/license", headers={"Authorization": f"Bearer {token['carl']}"}
            )
            slowest = max(slowest, took)
            assert r.status_code == 503, r.text  # the signed license: no 500 either
            r, took = timed(admin, "/users")
            slowest = max(slowest, took)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "database_unavailable" and "retry-after" in r.headers
            r, took = timed(http, "/v1/ready")
            slowest = max(slowest, took)
            assert r.status_code == 503, r.text
            if rounds == 1:
                js_answers = js_client(tmp_path, base, [token["ann"], token["carl"]])
                if js_answers is not None:  # ann from the server's cache; carl "could not tell"
                    assert js_answers == [
                        {
                            "plans": PRO,
                            "isLicenseUnsupportedEnv": False,
                            "isLicenseInfoAvailable": True,
                            "error": None,
                        },
                        {
                            "plans": [],
                            "isLicenseUnsupportedEnv": False,
                            "isLicenseInfoAvailable": False,
                            "error": {"code": "http", "status": 503},
                        },
                    ]
            time.sleep(0.1)
        assert slowest < ANSWER_BAR_SECONDS, f"a request took {slowest:.1f} s during the outage"

        # ------------------------------------------------------------ the database is back
        proxy.restore()
        restored_at = time.monotonic()
        recovered: dict[str, float] = {}
        while len(recovered) < 3:
            elapsed = time.monotonic() - restored_at
            assert elapsed < RECOVERY_BAR_SECONDS, (
                f"not recovered within {RECOVERY_BAR_SECONDS} s: {recovered}"
            )
            if "ready" not in recovered and http.get("/v1/ready").status_code == 200:
                recovered["ready"] = elapsed
            if "check" not in recovered:
                r, _ = check("carl")
                assert r.status_code in (200, 503), r.text
                if r.status_code == 200:
                    assert r.json()["plans"] == PRO
                    recovered["check"] = elapsed
            if "admin" not in recovered:
                r = admin.get("/users")
                assert r.status_code in (200, 503), r.text
                if r.status_code == 200:
                    recovered["admin"] = elapsed
            time.sleep(0.05)
        # the change feed is back too: a change written straight to the database (not through this
        # server, so only NOTIFY or the counters' poll can tell it) reaches the server's check
        licensing.assign(ctx, contoso.tenant, PLAN, users=[dave])
        changed_at = time.monotonic()
        while True:
            r, _ = check("dave")
            assert r.status_code == 200, r.text
            if r.json()["plans"] == PRO:
                break
            assert time.monotonic() - changed_at < 2.0, "the change feed did not recover"
            time.sleep(0.02)
        feed_s = time.monotonic() - changed_at
        # the server's own worker survived the outage: a group assignment made now is processed
        r = admin.post(f"/licenses/{PLAN}/assign", json={"groups": [sales]})
        assert r.status_code == 202, r.text
        assigned_at = time.monotonic()
        while True:
            r, _ = check("erin")
            assert r.status_code == 200, r.text
            if r.json()["plans"] == PRO:
                break
            assert time.monotonic() - assigned_at < 5.0, (
                "the worker did not process the group after the outage"
            )
            time.sleep(0.05)
        status = admin.get(f"/groups/{sales}/licenses").json()["items"][0]
        assert (status["processingState"], status["membersSeated"]) == ("Complete", 1)
        worker_s = time.monotonic() - assigned_at
        time.sleep(1.0)  # a few more writes after the outage
        writer.stop.set()
        writer.join(timeout=40)
        assert server.poll() is None, "the server process died"
    finally:
        if writer is not None:
            writer.stop.set()
        server.terminate()
        server.wait(timeout=15)
        log.close()

    # the writes: each answered 201 or 503, none took long, and every 201 is in the database
    assert not writer.problems, writer.problems
    assert max(took for *_, took in writer.results) < ANSWER_BAR_SECONDS
    created = [upn for _, upn, status, _ in writer.results if status == 201]
    refused = [upn for at, upn, status, _ in writer.results if status == 503]
    before = [upn for at, upn, status, _ in writer.results if status == 201 and at < cut_at]
    after = [upn for at, upn, status, _ in writer.results if status == 201 and at > restored_at]
    assert before and refused and after, (len(before), len(refused), len(after))
    with db.read() as conn:
        stored = set(
            conn.execute(
                select(users.c.user_principal_name).where(users.c.tenant_id == fabrikam.tenant)
            ).scalars()
        )
    assert set(created) <= stored, sorted(set(created) - stored)
    db.dispose()

    figures = {
        "requests during the outage": rounds * 6,
        "slowest answer during the outage (s)": round(slowest, 3),
        "recovered after restore (s)": {k: round(v, 2) for k, v in recovered.items()},
        "change written to the database seen by the check (s)": round(feed_s, 3),
        "group assigned after the outage, seen by the check (s)": round(worker_s, 3),
        "writes": {
            "201": len(created),
            "503": len(refused),
            "slowest (s)": round(max(t for *_, t in writer.results), 3),
        },
    }
    print(f"\n[postgresql] database outage of {OUTAGE_SECONDS:.0f} s: {json.dumps(figures)}")
