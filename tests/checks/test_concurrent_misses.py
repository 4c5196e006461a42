"""Concurrent checks that miss the cache for the same answer compute it once (checks/service.py); and a
write transaction bumps its tenant's change counter as its last statement (db/changes.py), so the
tenant's hot counter row is never held while the transaction waits for anything else."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import create_engine, text

from licensedesk.checks.service import Identity
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
        checker.feed.changed(env.world.tenant)  # a write of the tenant
        if stale_for:
            before, _at = checker.feed._last_change[env.world.tenant]
            checker.feed._last_change[env.world.tenant] = (before, time.monotonic() - stale_for)
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
    late = ask_while_the_leader_reads(stale_for=5.0)
    assert len(late) == 4 and all(read for _answer, read in late)


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
