"""Concurrent checks that miss the cache for the same answer compute it once (checks/service.py); and a
write transaction bumps its tenant's change counter as its last statement (db/changes.py), so the
tenant's hot counter row is never held while the transaction waits for anything else."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text

from licensedesk.checks import service
from licensedesk.checks.service import Answer, Identity, Lead
from licensedesk.db import changes
from licensedesk.db.engine import normalize_url
from licensedesk.licensing import service as licensing
from tests.world import PLAN


def test_concurrent_misses_of_one_answer_read_the_database_once(env, monkeypatch):  # type: ignore[no-untyped-def]
    checker = env.checker
    ann = env.world.user("ann")
    env.world.buy(1)
    licensing.assign(env.world.ctx, env.world.tenant, PLAN, users=[ann])
    identity = Identity(env.world.tenant, None, ("ann@contoso.com",), time.time() + 600)
    # the feed learns of the writes above by itself (LISTEN or polling): wait until it has
    version = checker.feed.version(env.world.tenant)
    deadline = time.monotonic() + 5
    while True:
        time.sleep(0.6)
        if checker.feed.version(env.world.tenant) == version:
            break
        version = checker.feed.version(env.world.tenant)
        assert time.monotonic() < deadline
    real = checker._compute
    calls: list[float] = []
    gate = threading.Event()

    def slow_compute(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(time.monotonic())
        gate.wait(5)  # the first computation is held until every thread has asked
        return real(*args, **kwargs)

    monkeypatch.setattr(checker, "_compute", slow_compute)
    answers: list[object] = []
    threads = [
        threading.Thread(target=lambda: answers.append(checker.answer(identity, "innofalls-charts")))
        for _ in range(16)
    ]
    for t in threads:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(answers) == 16 and len(calls) == 1
    assert {a.plans for a in answers} == {((PLAN, "innofalls.charts.pro", 1),)}  # type: ignore[attr-defined]
    assert checker.feed.version(env.world.tenant) == version
    # a change makes the next miss compute again, once
    checker.feed.changed(env.world.tenant)
    checker.answer(identity, "innofalls-charts")
    assert len(calls) == 2


def test_while_one_request_reads_a_changed_answer_the_others_get_the_previous_one_briefly(env, monkeypatch):  # type: ignore[no-untyped-def]
    """Within SPEC's second for a change to reach the check: the requests that arrive while the first one
    reads the new answer get the answer that was current until a moment ago, instead of queueing behind
    the read; once the previous answer is older than that moment, they wait for the new one."""
    monkeypatch.setattr(service, "STALE_SECONDS", 30.0)  # a loaded machine may pause the test
    checker = env.checker
    ann = env.world.user("ann")
    env.world.buy(1)
    licensing.assign(env.world.ctx, env.world.tenant, PLAN, users=[ann])
    checker.feed.poll()
    identity = Identity(env.world.tenant, None, ("ann@contoso.com",), time.time() + 600)
    previous = checker.answer(identity, "innofalls-charts")
    real = checker._compute
    gate = threading.Event()

    def held(*args, **kwargs):  # type: ignore[no-untyped-def]
        gate.wait(5)
        return real(*args, **kwargs)

    monkeypatch.setattr(checker, "_compute", held)

    def ask_while_the_leader_reads(stale_for: float) -> list[tuple[object, bool]]:
        before = checker.feed.version(env.world.tenant)
        checker.feed.changed(env.world.tenant)  # a write of the tenant
        if stale_for:
            checker.feed._ended[env.world.tenant][before] = time.monotonic() - stale_for
        gate.clear()
        leader = threading.Thread(target=lambda: checker.answer(identity, "innofalls-charts"))
        leader.start()
        time.sleep(0.05)  # the leader is reading (held)
        got: list[tuple[object, bool]] = []

        def ask() -> None:
            answer = checker.answer(identity, "innofalls-charts")
            got.append((answer, gate.is_set()))

        others = [threading.Thread(target=ask) for _ in range(4)]
        for t in others:
            t.start()
        time.sleep(0.1)
        gate.set()
        for t in [leader, *others]:
            t.join(10)
        return got

    fresh = ask_while_the_leader_reads(stale_for=0)
    assert len(fresh) == 4 and all(answer is previous and not read for answer, read in fresh)
    # superseded longer ago than the grace: they wait for the leader's read
    late = ask_while_the_leader_reads(stale_for=60.0)
    assert len(late) == 4 and all(read for _answer, read in late)


def cached_then_licensed(env) -> tuple[str, Answer, tuple[int, int]]:  # type: ignore[no-untyped-def]
    """Ann's answer (no license) cached, then Pro assigned to her: her token, the cached answer, and the
    version it was cached at (the feed knows the assignment: this process's commits are known at once)."""
    checker = env.checker
    ann = env.world.user("ann")
    env.world.buy(1)
    token = env.token("ann@contoso.com")
    checker.feed.poll()
    assert checker.cached_service_plans(token, "innofalls-charts") is None  # nothing cached yet
    before = checker.service_plans(token, "innofalls-charts")
    assert before.plans == () and checker.cached_service_plans(token, "innofalls-charts") is before
    version = checker.feed.version(env.world.tenant)
    licensing.assign(env.world.ctx, env.world.tenant, PLAN, users=[ann])
    assert checker.feed.version(env.world.tenant) != version
    checker.feed.poll()
    return token, before, version


def test_after_a_change_one_check_reads_the_new_answer_and_the_others_get_the_previous_one(env, monkeypatch):  # type: ignore[no-untyped-def]
    """After a write, the cache-only path (the event loop's) hands the first request a Lead: it reads the new
    answer in a thread, and so sees a change made just before it. The requests that arrive while it reads
    get the previous answer (current until less than STALE_SECONDS ago) without leaving the event loop;
    past that grace they decline to the slow path, which waits for the read."""
    monkeypatch.setattr(service, "STALE_SECONDS", 30.0)  # a loaded machine may pause the test
    checker = env.checker
    token, before, _version = cached_then_licensed(env)
    real = checker._compute
    gate = threading.Event()
    calls: list[float] = []

    def held(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(time.monotonic())
        gate.wait(5)
        return real(*args, **kwargs)

    monkeypatch.setattr(checker, "_compute", held)
    lead = checker.cached_service_plans(token, "innofalls-charts")
    assert isinstance(lead, Lead)
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(checker.read(lead)))
    reader.start()
    meanwhile = [checker.cached_service_plans(token, "innofalls-charts") for _ in range(20)]
    assert all(answer is before for answer in meanwhile)  # the previous answer, no second reader
    gate.set()
    reader.join(10)
    assert len(calls) == 1 and [a.plans for a in got] == [((PLAN, "innofalls.charts.pro", 1),)]  # type: ignore[attr-defined]
    assert checker.cached_service_plans(token, "innofalls-charts") is got[0]  # current now

    # a change whose new answer is still being read past the grace: the cache-only path declines
    gate.clear()
    version = checker.feed.version(env.world.tenant)
    checker.feed.changed(env.world.tenant)
    lead = checker.cached_service_plans(token, "innofalls-charts")
    assert isinstance(lead, Lead)
    reader = threading.Thread(target=lambda: checker.read(lead))
    reader.start()
    checker.feed._ended[env.world.tenant][version] = time.monotonic() - 60.0
    assert checker.cached_service_plans(token, "innofalls-charts") is None
    gate.set()
    reader.join(10)
    assert len(calls) == 2


def test_a_lead_given_up_before_its_read_began_lets_the_next_request_read(env, monkeypatch):  # type: ignore[no-untyped-def]
    """A request that claimed the read of a changed answer and was cancelled before its thread ran frees
    the read (routes: `checker.abandon` in a finally): the next request claims it, nobody waits it out."""
    monkeypatch.setattr(service, "STALE_SECONDS", 30.0)  # a loaded machine may pause the test
    checker = env.checker
    token, before, _version = cached_then_licensed(env)
    lead = checker.cached_service_plans(token, "innofalls-charts")
    assert isinstance(lead, Lead)
    assert checker.cached_service_plans(token, "innofalls-charts") is before  # meanwhile
    checker.abandon(lead)  # cancelled before its read began
    assert lead.flight.done.is_set() and lead.flight.answer is None
    again = checker.cached_service_plans(token, "innofalls-charts")
    assert isinstance(again, Lead) and again.flight is not lead.flight
    now = checker.read(again)
    assert now.plans == ((PLAN, "innofalls.charts.pro", 1),)
    checker.abandon(again)  # after its read: nothing to give up
    assert checker.cached_service_plans(token, "innofalls-charts") is now


def test_a_miss_never_waits_for_a_lead_whose_read_has_not_begun(env, monkeypatch):  # type: ignore[no-untyped-def]
    """A Lead's read waits for a thread of the pool; a slow-path miss holding one of those threads must not
    wait for that read (with every thread so held, nothing would move for the flight timeout): it reads
    for itself."""
    monkeypatch.setattr(service, "FLIGHT_WAIT_SECONDS", 30.0)  # waiting would show
    checker = env.checker
    token, _before, version = cached_then_licensed(env)
    lead = checker.cached_service_plans(token, "innofalls-charts")
    assert isinstance(lead, Lead) and not lead.flight.started
    checker.feed._ended[env.world.tenant][version] = time.monotonic() - 60.0  # past the grace
    started = time.monotonic()
    answer = checker.service_plans(token, "innofalls-charts")  # the slow path, in this thread
    assert time.monotonic() - started < 5
    assert answer.plans == ((PLAN, "innofalls.charts.pro", 1),)
    assert checker.read(lead).plans == answer.plans  # the lead still reads, later


def test_a_failed_computation_fails_every_waiter_and_is_not_cached(env, monkeypatch):  # type: ignore[no-untyped-def]
    checker = env.checker
    identity = Identity(env.world.tenant, None, ("nobody@contoso.com",), time.time() + 600)
    gate = threading.Event()

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        gate.wait(5)
        raise RuntimeError("the database is away")

    monkeypatch.setattr(checker, "_compute", failing)
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            checker.answer(identity, "innofalls-charts")
        except RuntimeError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    gate.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 8
    monkeypatch.undo()
    assert checker.answer(identity, "innofalls-charts").plans == ()


def test_the_change_counter_is_bumped_last_and_held_only_for_the_commit(db, backend):  # type: ignore[no-untyped-def]
    if backend == "sqlite":
        pytest.skip("SQLite has no row locks: one writer at a time holds the whole database")
    with db.write() as conn:
        conn.execute(text("INSERT INTO change_counters (tenant_id, version) VALUES ('t1', 1)"))
    probe = create_engine(normalize_url(str(db.engine.url.render_as_string(hide_password=False))))
    try:
        with db.write() as conn:
            changes.bump(conn, "t1")
            # later work of the same transaction: the counter row is not locked yet
            with probe.connect() as other, other.begin():
                other.execute(text("SET lock_timeout = '200ms'"))
                other.execute(text("SELECT version FROM change_counters WHERE tenant_id = 't1' FOR UPDATE"))
            version = conn.execute(text("SELECT version FROM change_counters WHERE tenant_id = 't1'"))
            assert version.scalar_one() == 1
        with db.read() as conn:
            assert (
                conn.execute(text("SELECT version FROM change_counters WHERE tenant_id = 't1'")).scalar_one()
                == 2
            )
    finally:
        probe.dispose()
