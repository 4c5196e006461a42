"""Group processing by the worker: jobs merge, are leased, retried, and run at any nesting depth."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, update

from licensedesk.db.schema import jobs
from licensedesk.directory import service as directory
from licensedesk.licensing import processing
from licensedesk.licensing import repository as repo
from licensedesk.licensing import service as licensing
from licensedesk.worker import Worker
from tests.world import PLAN, make_world


@pytest.fixture
def w(ctx):
    return make_world(ctx)


def job_count(ctx) -> int:
    with ctx.db.read() as conn:
        return conn.execute(select(func.count()).select_from(jobs)).scalar_one()


def test_duplicate_pending_group_jobs_merge(w, ctx):
    w.buy(10)
    g = w.group("G", users=w.users("m", 3))
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    licensing.unassign(ctx, w.tenant, PLAN, groups=[g])
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    assert job_count(ctx) == 1
    assert w.drain() == 1
    assert w.overview().assigned == 3
    assert w.overview().available == 7  # every reservation released


def test_membership_jobs_of_a_tenant_are_processed_in_one_batch(w, ctx):
    w.buy(50)
    g = w.group("G")
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    w.drain()
    users = w.users("m", 30)
    for u in users:
        directory.add_members(ctx, w.tenant, g, users=[u])
    assert job_count(ctx) == 30
    assert processing.run_once(ctx) == 30
    assert w.states(users) == ["Active"] * 30
    [status] = licensing.group_licenses(ctx, w.tenant, g)
    assert (status.processing_state, status.members_total, status.members_seated) == ("Complete", 30, 30)


def test_a_job_whose_worker_died_is_taken_over_when_its_lease_runs_out(w, ctx, clock):
    w.buy(5)
    g = w.group("G", users=w.users("m", 2))
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    # a worker claims the job and dies before finishing it
    [_job] = processing.claim(ctx, "dead-worker", lease_seconds=120)
    assert processing.run_once(ctx) == 0  # still leased
    [status] = licensing.group_licenses(ctx, w.tenant, g)
    assert status.processing_state == "InProgress"
    clock.advance(seconds=121)
    assert processing.run_once(ctx) == 1
    assert w.overview().assigned == 2
    assert job_count(ctx) == 0


def test_a_job_running_past_its_lease_is_not_taken_over_while_its_worker_lives(w, ctx, clock, backend):
    """A fan-out longer than the lease (a million members take minutes): while the worker's transaction
    lives, its job rows stay locked and another worker's claim skips them instead of redoing the job.
    (SQLite: the running job holds the one write lock, so no other worker can claim anything meanwhile.)"""
    if backend != "postgresql":
        pytest.skip("row locks: PostgreSQL (on SQLite the processing transaction holds the write lock)")
    w.buy(5)
    g = w.group("G", users=w.users("m", 2))
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    [job] = processing.claim(ctx, "slow-worker", lease_seconds=120)
    with ctx.db.write() as conn:  # the slow worker's processing transaction, still running
        assert repo.jobs_still_leased(conn, w.tenant, [job.id], "slow-worker")
        clock.advance(seconds=121)  # its lease has run out
        assert processing.claim(ctx, "other-worker", lease_seconds=120) == []
    assert processing.claim(ctx, "other-worker", lease_seconds=120) != []  # the worker is gone: taken over


def test_a_worker_whose_lease_was_taken_over_does_not_apply_its_work(w, ctx, clock, monkeypatch):
    w.buy(5)
    g = w.group("G", users=w.users("m", 2))
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    real = repo.jobs_still_leased

    def taken_over(conn, tenant_id, job_ids, token):
        # another worker took the job over while this one was slow
        conn.execute(update(jobs).values(lease_token="someone-else"))
        return real(conn, tenant_id, job_ids, token)

    monkeypatch.setattr(repo, "jobs_still_leased", taken_over)
    assert processing.run_once(ctx) == 0
    assert w.overview().assigned == 0


def test_a_failing_job_is_retried_with_backoff(w, ctx, clock, monkeypatch):
    w.buy(5)
    g = w.group("G", users=w.users("m", 2))
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    real = licensing.apply_scope
    failures = {"left": 2}

    def flaky(*args, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("database hiccup")
        return real(*args, **kwargs)

    monkeypatch.setattr(licensing, "apply_scope", flaky)
    assert processing.run_once(ctx) == 0
    with ctx.db.read() as conn:
        job = conn.execute(select(jobs)).one()
    assert (job.state, job.attempts, "database hiccup" in job.last_error) == ("queued", 1, True)
    assert processing.run_once(ctx) == 0  # not due yet: backing off
    clock.advance(seconds=3)
    assert processing.run_once(ctx) == 0  # fails again
    clock.advance(seconds=5)
    assert processing.run_once(ctx) == 1
    assert w.overview().assigned == 2


def test_the_worker_thread_processes_a_group_assignment_by_itself(w, ctx):
    w.buy(5)
    g = w.group("G", users=w.users("m", 3))
    worker = Worker(ctx, poll_seconds=5, lifecycle_seconds=3600)
    worker.start()
    try:
        licensing.assign(ctx, w.tenant, PLAN, groups=[g])
        deadline = time.monotonic() + 10
        while licensing.group_licenses(ctx, w.tenant, g)[0].processing_state != "Complete":
            assert time.monotonic() < deadline, "the worker did not complete the group in time"
            time.sleep(0.02)
    finally:
        worker.stop()
    assert w.overview().assigned == 3


def test_nested_groups_at_any_depth_are_processed(w, ctx):
    w.buy(10)
    u = w.user("deep")
    child = w.group("level-0", users=[u])
    for i in range(1, 60):
        child = w.group(f"level-{i}", groups=[child])
    licensing.assign(ctx, w.tenant, PLAN, groups=[child])
    w.drain()
    assert w.state(u) == "Active"
    [lic] = licensing.user_licenses(ctx, w.tenant, u)
    assert lic.sources == [{"type": "group", "groupId": child, "groupName": "level-59"}]


def test_a_failed_job_covered_by_a_newer_duplicate_hands_over_its_reservation(w, ctx, monkeypatch):
    w.buy(5)
    g = w.group("G", users=w.users("m", 2))
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    [job] = processing.claim(ctx, "worker-1")
    licensing.unassign(ctx, w.tenant, PLAN, groups=[g])
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])  # queues a duplicate while the first is running
    with ctx.db.write() as conn:
        repo.fail_jobs(conn, w.tenant, [job.id], "worker-1", "boom", ctx.clock.now())
    assert job_count(ctx) == 1
    # the duplicate now holds both reservations (2 + 2): conservative until it runs, never lost
    assert (w.overview().available, w.overview().reserved) == (1, 4)
    w.drain()
    assert w.overview().assigned == 2
    assert w.overview().available == 3
