"""Issue 8, item 2 (SPEC section 8): the scale-out path on PostgreSQL.

Two real API processes (`licensedesk serve --no-worker`) and two real worker processes (`licensedesk
worker`) share one fresh PostgreSQL database. The test shows:

- concurrent assigns through both API processes racing for the last seats never over-assign: 200 direct
  assigns for the last 5 seats seat exactly 5 (exactly the 5 answered 200), and 20 group assigns of 3
  users each for the last 6 seats are accepted exactly twice (their seats reserved across processes);
- a change through one API process is seen by the run-time check of the other within 1 s, both ways;
- the API processes run no job worker (a queued group assignment stays Queued until a worker starts);
- every job's effect happens once: group fan-outs and membership changes queued through both APIs are
  processed by two competing workers; every job is finished by exactly one of them (their logs), both
  take part, and the final state (license rows, pool counters, group status, the nesting closure) equals a
  from-scratch recomputation from the raw facts (tests/licensing/test_state_machine.py's model); per user,
  the audit log's grants and revocations add up to the license the user holds (none doubled).
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from licensedesk.auth import service as auth
from licensedesk.checks.service import Checker
from licensedesk.clock import SystemClock
from licensedesk.context import Context
from licensedesk.db.changes import ChangeFeed
from licensedesk.db.engine import Database
from licensedesk.db.migrate import upgrade
from licensedesk.db.schema import audit_events, group_assignments, jobs, licenses, users
from licensedesk.directory import service as directory
from licensedesk.licensing import service as licensing
from tests.cli.test_serve_end_to_end import free_port
from tests.conftest import require_postgres
from tests.licensing.test_state_machine import check_engine_against_model, read_facts, recompute
from tests.reliability import fanout_data
from tests.world import PLAN, make_world

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # bounds in time: run alone

BIN = Path(sys.executable).parent / "licensedesk"
BASIC = "innofalls-charts-basic"
PRODUCT = "innofalls-charts"
SERVICE_PLANS = f"/v1/licensing/{PRODUCT}/servicePlans"
BASIC_PLAN = [{"spIdentifier": "innofalls.charts.basic", "state": 1}]
EFFECT_BAR_SECONDS = 1.0
FINISHED = re.compile(r"finished \d+ job\(s\) of tenant (\S+): ([0-9a-f\- ]+)$", re.MULTILINE)


class Processes:
    """The API and worker processes of the test, on one database; all are stopped at the end."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def _env(self, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "LICENSEDESK_DATABASE_URL": self.url,
            "LICENSEDESK_LOG_LEVEL": "info",
            "LICENSEDESK_WORKER_POLL_SECONDS": "0.1",
            **extra,
        }

    def _start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen([str(BIN), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def api(self, name: str) -> str:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = self._env(LICENSEDESK_DEV_ISSUER="1", LICENSEDESK_PUBLIC_URL=base)
        proc = self._start(name, ["serve", "--no-worker", "--port", str(port)], env)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/v1/ready", timeout=1).status_code == 200:
                    return base
            except httpx.TransportError:
                pass
            assert proc.poll() is None, self.log(name)
            assert time.monotonic() < deadline, f"{name} did not become ready"
            time.sleep(0.1)

    def worker(self, name: str) -> subprocess.Popen[bytes]:
        return self._start(name, ["worker"], self._env())

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def database(request: pytest.FixtureRequest) -> str:
    server = require_postgres(request.getfixturevalue("postgres_server"))
    return server.new_database()


@pytest.fixture
def processes(database: str, tmp_path: Path) -> Iterator[Processes]:
    p = Processes(database, tmp_path)
    yield p
    p.close()


def wait_for(what: str, ok: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = ok()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def bulk_users(ctx: Context, tenant: str, prefix: str, n: int) -> list[str]:
    """n users in one transaction (one per user costs seconds more)."""
    with ctx.db.write() as conn:
        return [
            directory.create_user_in(conn, ctx, tenant, f"{prefix}{i:03d}@contoso.com", f"{prefix} {i}").id
            for i in range(n)
        ]


def finished_jobs(log: str) -> list[str]:
    return [job for _tenant, ids in FINISHED.findall(log) for job in ids.split()]


@pytest.mark.timeout(150)
def test_two_api_processes_and_two_workers_on_one_postgresql_database(
    database: str, processes: Processes
) -> None:
    t_start = time.perf_counter()
    db = Database(database)
    upgrade(db)
    ctx = Context(db=db, clock=SystemClock())
    try:
        w = make_world(ctx, "contoso")
        w.buy(25)
        w.buy(2000, plan=BASIC)
        seated = bulk_users(ctx, w.tenant, "seated", 20)
        licensing.assign(ctx, w.tenant, PLAN, users=seated)
        racers = bulk_users(ctx, w.tenant, "racer", 200)
        group_racers = [bulk_users(ctx, w.tenant, f"g{i:02d}m", 3) for i in range(20)]
        race_groups = [w.group(f"Race {i:02d}", users=m) for i, m in enumerate(group_racers)]
        # the fan-out directory: 4 departments of 8 teams of 30 users, neighbouring teams sharing 5 users
        staff = bulk_users(ctx, w.tenant, "staff", 800)
        teams = [
            w.group(f"Team {t:02d}", users=[staff[(t * 25 + k) % 800] for k in range(30)]) for t in range(32)
        ]
        departments = [w.group(f"Dept {d}", groups=teams[d * 8 : d * 8 + 8]) for d in range(4)]
        w.user("probe")
        admin = auth.create_token(ctx, "global_admin", tenant_ref=w.tenant)[1]
        probe_token = Checker(ctx, ChangeFeed(db), public_url="http://test", dev_issuer=True).mint_dev_token(
            w.tenant, "probe@contoso.com", PRODUCT
        )
        # planner statistics, as autovacuum would soon gather them (without them PostgreSQL plans the
        # recomputation as a nested loop over every member: see fanout_data.analyze and bench/results.md)
        fanout_data.analyze(db)
        built_s = time.perf_counter() - t_start

        base_a, base_b = processes.api("api-a"), processes.api("api-b")
        headers = {"Authorization": f"Bearer {admin}"}
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        api = {
            name: httpx.Client(
                base_url=f"{base}/v1/tenants/contoso", headers=headers, timeout=30, limits=limits
            )
            for name, base in (("a", base_a), ("b", base_b))
        }
        check = {
            name: httpx.Client(base_url=base, headers={"Authorization": f"Bearer {probe_token}"}, timeout=10)
            for name, base in (("a", base_a), ("b", base_b))
        }

        # 1. 200 direct assigns through both processes, 32 at a time, for the last 5 seats
        assert w.overview().available == 5

        def assign_user(i: int) -> tuple[str, int, dict[str, Any]]:
            r = api["ab"[i % 2]].post(f"/licenses/{PLAN}/assign", json={"users": [racers[i]]})
            return racers[i], r.status_code, r.json()

        with ThreadPoolExecutor(32) as pool:
            answers = list(pool.map(assign_user, range(200)))
        statuses = Counter(status for _u, status, _b in answers)
        assert statuses == {200: 5, 409: 195}, statuses
        assert {b["code"] for _u, s, b in answers if s == 409} == {"not_enough_licenses"}
        winners = {u for u, s, b in answers if s == 200 and b["users"][0]["state"] == "Active"}
        assert len(winners) == 5
        assert {u for u in racers if w.state(u) == "Active"} == winners
        assert {u for u in racers if w.state(u) is not None} == winners
        row = w.overview()
        assert (row.purchased, row.assigned, row.available, row.waiting) == (25, 25, 0, 0)

        # 2. a change through one process is seen by the other's check within 1 s, both ways
        assert check["a"].get(SERVICE_PLANS).json()["plans"] == []
        assert check["b"].get(SERVICE_PLANS).json()["plans"] == []  # both have the answer cached
        delays = []
        for i in range(8):
            via, seen_by = ("a", "b") if i // 2 % 2 == 0 else ("b", "a")
            action, expected = ("assign", BASIC_PLAN) if i % 2 == 0 else ("unassign", [])
            r = api[via].post(f"/licenses/{BASIC}/{action}", json={"users": ["probe@contoso.com"]})
            assert r.status_code == 200, r.text
            done = time.monotonic()
            while True:
                answer = check[seen_by].get(SERVICE_PLANS)
                assert answer.status_code == 200, answer.text
                if answer.json()["plans"] == expected:
                    break
                assert time.monotonic() - done < EFFECT_BAR_SECONDS, (
                    f"{action} via {via} not seen by {seen_by}"
                )
                time.sleep(0.005)
            delays.append(time.monotonic() - done)
        assert check["a"].get(SERVICE_PLANS).json()["plans"] == []
        assert max(delays) < EFFECT_BAR_SECONDS

        # 3. the API processes run no worker: a queued group assignment stays Queued
        r = api["a"].post(f"/licenses/{BASIC}/assign", json={"groups": [departments[0]]})
        assert r.status_code == 202, r.text
        time.sleep(1.0)
        with db.read() as conn:
            assert list(conn.execute(select(jobs.c.state).where(jobs.c.tenant_id == w.tenant)).scalars()) == [
                "queued"
            ]
        [status] = [g for g in licensing.group_licenses(ctx, w.tenant, departments[0]) if g.plan_id == BASIC]
        assert status.processing_state == "Queued"

        # 4. 20 group assigns (3 users each) through both processes for 6 more seats: exactly 2 accepted
        subscription = api["a"].get("/subscriptions").json()["items"]
        [pro] = [s for s in subscription if s["planId"] == PLAN]
        r = api["b"].patch(f"/subscriptions/{pro['id']}", json={"quantity": 31})
        assert r.status_code == 200, r.text

        def assign_group(i: int) -> tuple[str, int, dict[str, Any]]:
            r = api["ab"[i % 2]].post(f"/licenses/{PLAN}/assign", json={"groups": [race_groups[i]]})
            return race_groups[i], r.status_code, r.json()

        with ThreadPoolExecutor(20) as pool:
            group_answers = list(pool.map(assign_group, range(20)))
        group_statuses = Counter(status for _g, status, _b in group_answers)
        assert group_statuses == {202: 2, 409: 18}, group_statuses
        accepted = [g for g, s, _b in group_answers if s == 202]
        row = w.overview()
        assert (row.assigned, row.reserved, row.available) == (25, 6, 0)

        # 5. more fan-outs queued through both processes, then two workers compete for the jobs
        r = api["a"].post(f"/licenses/{BASIC}/assign", json={"groups": teams[:16]})
        assert r.status_code == 202, r.text
        r = api["b"].post(f"/licenses/{BASIC}/assign", json={"groups": teams[16:] + departments[1:3]})
        assert r.status_code == 202, r.text
        with db.read() as conn:
            queued = set(conn.execute(select(jobs.c.id).where(jobs.c.tenant_id == w.tenant)).scalars())
        assert len(queued) == 1 + 2 + 32 + 2
        t_workers = time.perf_counter()
        processes.worker("worker-1")
        processes.worker("worker-2")

        # membership changes through both processes while the workers run
        churn_log: list[tuple[str, str, str, int]] = []
        churn_seconds: list[float] = []

        def churn(via: str, stop: float) -> None:
            rng = random.Random(via)
            while time.monotonic() < stop:
                # API a changes the even teams, API b the odd ones
                team = 2 * rng.randrange(16) + (via == "b")
                user = staff[(team * 25 + rng.randrange(30)) % 800]
                started = time.monotonic()
                r1 = api[via].delete(f"/groups/{teams[team]}/members/{user}")
                r2 = api[via].post(f"/groups/{teams[team]}/members", json={"users": [user]})
                churn_log.append((via, teams[team], user, r1.status_code * 1000 + r2.status_code))
                churn_seconds.append(time.monotonic() - started)

        stop = time.monotonic() + 3.0
        churners = [threading.Thread(target=churn, args=(via, stop)) for via in "ab"]
        for t in churners:
            t.start()
        for t in churners:
            t.join(timeout=30)
        assert churn_log and {code for *_x, code in churn_log} == {200_200}, Counter(
            c for *_x, c in churn_log
        )

        def settled() -> bool:
            with db.read() as conn:
                left = conn.execute(
                    select(func.count()).select_from(jobs).where(jobs.c.tenant_id == w.tenant)
                ).scalar_one()
                states = set(
                    conn.execute(
                        select(group_assignments.c.processing_state).where(
                            group_assignments.c.tenant_id == w.tenant
                        )
                    ).scalars()
                )
            return left == 0 and states == {"Complete"}

        wait_for("every job done and every group Complete", settled, 60)
        processed_s = time.perf_counter() - t_workers

        # every job was finished by exactly one worker, and both took part
        by_worker = {name: finished_jobs(processes.log(name)) for name in ("worker-1", "worker-2")}
        every = by_worker["worker-1"] + by_worker["worker-2"]
        doubled = [job for job, n in Counter(every).items() if n > 1]
        assert not doubled, f"jobs finished twice: {doubled}"
        assert queued <= set(every), "a queued job was never finished"
        assert all(by_worker.values()), {k: len(v) for k, v in by_worker.items()}
        for name in ("worker-1", "worker-2", "api-a", "api-b"):
            assert "Traceback" not in processes.log(name), processes.log(name)

        # the final state equals a from-scratch recomputation (licenses, counters, group status, closure)
        check_engine_against_model(ctx, w.tenant, recompute(read_facts(ctx, w.tenant)))
        row = w.overview()
        assert (row.purchased, row.assigned, row.available, row.waiting, row.reserved) == (31, 31, 0, 0, 0)
        for g in accepted:
            assert {w.state(u) for u in group_racers[race_groups.index(g)]} == {"Active"}
        with db.read() as conn:
            basic_holders = set(
                conn.execute(
                    select(licenses.c.user_id).where(
                        licenses.c.tenant_id == w.tenant, licenses.c.plan_id == BASIC
                    )
                ).scalars()
            )
            events = conn.execute(
                select(audit_events.c.target_id, audit_events.c.action, func.count())
                .where(
                    audit_events.c.tenant_id == w.tenant,
                    audit_events.c.plan_id == BASIC,
                    audit_events.c.target_type == "user",
                    audit_events.c.action.in_(("license.granted", "license.revoked")),
                )
                .group_by(audit_events.c.target_id, audit_events.c.action)
            ).all()
            n_users = conn.execute(
                select(func.count()).select_from(users).where(users.c.tenant_id == w.tenant)
            ).scalar_one()
        assert basic_holders == set(staff)
        net: Counter[str] = Counter()
        for user, action, n in events:
            net[user] += n if action == "license.granted" else -n
        # per user, grants minus revocations is 1 for a holder and 0 otherwise: no grant doubled
        assert {u: n for u, n in net.items() if n != (1 if u in basic_holders else 0)} == {}
        assert set(net) >= basic_holders
        print(
            f"\n[postgresql] scale-out, 2 API + 2 worker processes, {n_users} users: data {built_s:.1f} s; "
            f"direct race 200 -> 5 seated; group race 20 -> 2 accepted; time to effect across processes "
            f"max {max(delays) * 1000:.0f} ms (p50 {sorted(delays)[len(delays) // 2] * 1000:.0f} ms); "
            f"{len(set(every))} jobs ({len(by_worker['worker-1'])} / {len(by_worker['worker-2'])} per "
            f"worker), {len(churn_log)} membership remove+add pairs (slowest {max(churn_seconds):.2f} s), "
            f"all processed {processed_s:.1f} s after "
            f"the workers started; whole test {time.perf_counter() - t_start:.1f} s"
        )
    finally:
        db.dispose()
