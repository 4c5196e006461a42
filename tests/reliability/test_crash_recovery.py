"""SPEC section 10: a worker killed (SIGKILL) in the middle of a 100,000-member group fan-out finishes it
after a restart, with the same final state as an uninterrupted run; nothing is lost or duplicated.

Two tenants get the same nested group of 100,000 users and a subscription of as many seats, and the plan is
assigned to each group through the service at the same instant (so claim times are equal). A real
`licensedesk worker` process runs the first tenant's fan-out uninterrupted (the reference, and the time it
takes). It then takes the second tenant's job; once the job is leased and its transaction is writing
(PostgreSQL: the worker's backend is in a transaction holding an xid; SQLite: the write lock is held), the
test waits a part of the reference time and SIGKILLs the worker. A new worker process takes the job over
when its (short) lease has run out and completes it. Both tenants' final states are then compared row by
row.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from licensedesk.billing import service as billing
from licensedesk.catalog import service as catalog
from licensedesk.clock import FrozenClock, SystemClock
from licensedesk.context import Context
from licensedesk.db.engine import Database
from licensedesk.db.schema import (
    audit_events,
    job_users,
    jobs,
    licenses,
    pools,
    seat_reservations,
    users,
    work_desired,
    work_scope,
    work_seat_changes,
)
from licensedesk.licensing import service as licensing
from licensedesk.tenancy import service as tenancy
from tests.reliability import fanout_data

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent / "licensedesk"
SIZE = 100_000
PRODUCT = "innofalls-charts"
PLAN = "innofalls-charts-basic"
LEASE_SECONDS = 4
APP_NAME = "licensedesk-crash-worker"
# how far into the fan-out (as a share of the uninterrupted run's time) the worker is killed
KILL_AT = 0.35


class Workers:
    """`licensedesk worker` processes on one database; any left running are killed at the end."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.env = {
            **os.environ,
            "LICENSEDESK_DATABASE_URL": url,
            "LICENSEDESK_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
            "LICENSEDESK_WORKER_POLL_SECONDS": "0.2",
            "LICENSEDESK_LOG_LEVEL": "warning",
        }
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker-{len(self.procs) + 1}.log").open("wb")
        proc = subprocess.Popen([str(BIN), "worker"], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def log(self, n: int) -> str:
        return (self.log_dir / f"worker-{n}.log").read_text(errors="replace")

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def workers(database_url: str, backend: str, tmp_path: Path) -> Iterator[Workers]:
    url = database_url if backend == "sqlite" else f"{database_url}?application_name={APP_NAME}"
    w = Workers(url, tmp_path)
    yield w
    w.close()


def wait_for(what: str, ok: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes] | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = ok()
        if value:
            return value
        if proc is not None:
            assert proc.poll() is None, f"the worker exited ({proc.returncode}) while waiting for {what}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.05)


def group_status(ctx: Context, d: fanout_data.Directory) -> licensing.GroupLicense:
    [status] = [g for g in licensing.group_licenses(ctx, d.tenant_id, d.top_group) if g.plan_id == PLAN]
    return status


def job_states(db: Database, tenant_id: str) -> list[str]:
    with db.read() as conn:
        return list(conn.execute(select(jobs.c.state).where(jobs.c.tenant_id == tenant_id)).scalars())


def fanout_underway(db: Database) -> bool:
    """The worker's fan-out transaction is open and has written. PostgreSQL: the worker's backend is in a
    transaction that holds a transaction id (it has written or locked rows). SQLite: someone holds the
    database's write lock (the worker's claim has committed before this is asked, so it is the fan-out)."""
    if db.is_sqlite:
        path = db.engine.url.database
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            assert "locked" in str(exc), exc
            return True
        finally:
            probe.close()
        return False
    with db.engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = :app "
                    "AND backend_xid IS NOT NULL AND datname = current_database()"
                ),
                {"app": APP_NAME},
            ).scalar_one()
        )


def license_rows(db: Database, tenant_id: str) -> list[tuple[Any, ...]]:
    """(upn, state, claim_at, claim key is the user's own id, direct, via_group, active), by upn."""
    with db.read() as conn:
        rows = conn.execute(
            select(
                users.c.user_principal_name,
                licenses.c.state,
                licenses.c.claim_at,
                licenses.c.claim_key == licenses.c.user_id,
                licenses.c.direct,
                licenses.c.via_group,
                licenses.c.active,
            )
            .join(users, (users.c.tenant_id == licenses.c.tenant_id) & (users.c.id == licenses.c.user_id))
            .where(licenses.c.tenant_id == tenant_id, licenses.c.plan_id == PLAN)
            .order_by(users.c.user_principal_name)
        ).all()
    return [tuple(r) for r in rows]


def pool_counters(db: Database, tenant_id: str) -> dict[str, Any]:
    with db.read() as conn:
        row = conn.execute(select(pools).where(pools.c.tenant_id == tenant_id, pools.c.plan_id == PLAN)).one()
    return {k: v for k, v in row._mapping.items() if k not in ("tenant_id", "updated_at")}


def fanout_events(db: Database, tenant_id: str) -> dict[tuple[str, str], int]:
    """How many audit events of each (action, user) the fan-out wrote about the plan's licenses."""
    with db.read() as conn:
        rows = conn.execute(
            select(audit_events.c.action, audit_events.c.target_name, func.count())
            .where(
                audit_events.c.tenant_id == tenant_id,
                audit_events.c.plan_id == PLAN,
                audit_events.c.target_type == "user",
            )
            .group_by(audit_events.c.action, audit_events.c.target_name)
        ).all()
    return {(action, name): n for action, name, n in rows}


def leftovers(db: Database, tenant_id: str) -> dict[str, int]:
    with db.read() as conn:
        return {
            t.name: conn.execute(
                select(func.count()).select_from(t).where(t.c.tenant_id == tenant_id)
            ).scalar_one()
            for t in (jobs, job_users, seat_reservations, work_scope, work_desired, work_seat_changes)
        }


@pytest.mark.timeout(420)
def test_a_worker_killed_mid_fanout_finishes_it_after_a_restart_as_an_uninterrupted_run(
    database_url: str, backend: str, workers: Workers
) -> None:
    t_start = time.perf_counter()
    db = Database(database_url)
    try:
        ctx = Context(db=db, clock=SystemClock())
        catalog.create_product(ctx, PRODUCT, "Innofalls Charts", f"api://{PRODUCT}")
        catalog.create_plan(ctx, PRODUCT, PLAN, "Basic", "innofalls.charts.basic")
        calm = tenancy.create_tenant(ctx, "calm", "Calm").id
        crash = tenancy.create_tenant(ctx, "crash", "Crash").id
        ref = fanout_data.build(db, calm, SIZE, digit="b")
        hit = fanout_data.build(db, crash, SIZE, digit="c")
        fanout_data.analyze(db)
        for tenant in (calm, crash):
            billing.create_subscription(ctx, tenant, PLAN, SIZE)
        built = time.perf_counter() - t_start

        # both groups are assigned at the same instant, so their members' claim times are equal
        assign_ctx = Context(db=db, clock=FrozenClock(SystemClock().now()))

        # the reference: one worker, uninterrupted
        first = workers.start()
        t0 = time.perf_counter()
        licensing.assign(assign_ctx, calm, PLAN, groups=[ref.top_group])
        wait_for(
            "the reference fan-out Complete",
            lambda: group_status(ctx, ref).processing_state == "Complete",
            180,
            first,
        )
        reference_s = time.perf_counter() - t0

        # the same fan-out in the other tenant; the worker dies in the middle of it
        licensing.assign(assign_ctx, crash, PLAN, groups=[hit.top_group])
        t1 = time.perf_counter()
        wait_for("the job leased", lambda: job_states(db, crash) == ["running"], 30, first)
        leased_s = time.perf_counter() - t1
        wait_for("the fan-out's transaction writing", lambda: fanout_underway(db), 30, first)
        time.sleep(KILL_AT * reference_s)
        assert first.poll() is None
        assert fanout_underway(db), "the fan-out's transaction ended before the kill"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
        killed_at = time.perf_counter()
        into_s = killed_at - t1
        # it was killed mid-job: the job is still leased, nothing of the fan-out is committed
        assert job_states(db, crash) == ["running"]
        assert group_status(ctx, hit).processing_state == "InProgress"
        with db.read() as conn:
            committed = conn.execute(
                select(func.count()).select_from(licenses).where(licenses.c.tenant_id == crash)
            ).scalar_one()
        assert committed == 0

        second = workers.start()
        wait_for(
            "the interrupted fan-out Complete after the restart",
            lambda: group_status(ctx, hit).processing_state == "Complete",
            180,
            second,
        )
        recovered_s = time.perf_counter() - killed_at

        # the same final state as the uninterrupted run, row by row (modulo ids)
        expected = license_rows(db, calm)
        got = license_rows(db, crash)
        assert len(expected) == SIZE
        assert len({r[0] for r in got}) == len(got) == SIZE  # none missing, none doubled
        assert got == expected
        assert {r[1] for r in got} == {"Active"}
        assert pool_counters(db, crash) == pool_counters(db, calm)
        for d in (ref, hit):
            status = group_status(ctx, d)
            assert (status.members_total, status.members_seated, status.members_with_errors) == (
                SIZE,
                SIZE,
                0,
            )
            row = licensing.license_overview(ctx, d.tenant_id, PLAN)
            assert (row.assigned, row.waiting, row.available, row.reserved) == (SIZE, 0, 0, 0)
            # no job left, none stuck running, no reservation or scratch rows
            left = leftovers(db, d.tenant_id)
            assert left == dict.fromkeys(left, 0), left
        # the fan-out's audit events: exactly one license.granted per user, as in the reference
        events = fanout_events(db, crash)
        assert len(events) == SIZE
        assert set(events.values()) == {1}
        assert {a for a, _ in events} == {"license.granted"}
        assert events == fanout_events(db, calm)
        assert "Traceback" not in workers.log(2), workers.log(2)

        print(
            f"\n[{backend}] crash recovery, {SIZE:,} members: data built in {built:.1f} s; "
            f"uninterrupted fan-out {reference_s:.1f} s; crashed job leased after {leased_s:.1f} s, "
            f"worker SIGKILLed {into_s:.1f} s after the assign; new worker completed it "
            f"{recovered_s:.1f} s after the kill (lease {LEASE_SECONDS} s)"
        )
    finally:
        db.dispose()
