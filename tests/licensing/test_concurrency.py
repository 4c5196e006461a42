"""Seats are never over-assigned: 200 concurrent assigns racing for the last 5 seats seat exactly 5."""

from __future__ import annotations

import threading

from licensedesk.context import Context
from licensedesk.db.engine import Database
from licensedesk.errors import NotEnoughLicenses
from licensedesk.licensing import service as licensing
from tests.world import PLAN, make_world


def test_two_hundred_concurrent_assigns_for_the_last_five_seats_seat_exactly_five(ctx, database_url):
    w = make_world(ctx)
    w.buy(25)
    seated = w.users("seated", 20)
    licensing.assign(ctx, w.tenant, PLAN, users=seated)
    racers = w.users("racer", 200)
    assert w.overview().available == 5

    # separate connections (PostgreSQL) / threads sharing the file (SQLite): 8 at a time
    results: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def run(chunk: list[str]) -> None:
        database = Database(database_url, pool_size=2)
        local = Context(db=database, clock=ctx.clock)
        barrier.wait()
        for user in chunk:
            try:
                r = licensing.assign(local, w.tenant, PLAN, users=[user])
                outcome = r.users[0]["state"]
            except NotEnoughLicenses:
                outcome = "refused"
            with lock:
                results.append(outcome)
        database.dispose()

    threads = [threading.Thread(target=run, args=(racers[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 200
    assert results.count("Active") == 5
    assert results.count("refused") == 195
    row = w.overview()
    assert (row.purchased, row.assigned, row.available, row.waiting) == (25, 25, 0, 0)
    winners = [u for u in racers if w.state(u) == "Active"]
    assert len(winners) == 5
