"""SPEC section 10 (abuse): a very large group is assigned a plan and processed to Complete without
holding its members in the worker's memory, and what an admin reads of it stays paged and fast.

CI runs 200,000 members on PostgreSQL (the scale-out backend); bench/scale_groups.py runs 1,000,000 on
both backends with a real worker process and reports time and peak resident set (RELIABILITY.md).

`Everyone` holds the users directly and is nested in `Company`, which the plan is assigned to. The fan-out
runs in this process under tracemalloc: its peak of Python allocations must stay under MEMORY_BOUND, a
fraction of what the members' ids alone would take as Python strings (about 17 MB for 200,000), so a
worker that fetched the members, or any per-member rows, would fail it. The reads must each answer within
REQUEST_BOUND: a guard against a read that walks every member (it would take many seconds), not a figure.
"""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest

from bench import scale_groups
from licensedesk.billing import service as billing
from licensedesk.context import Context
from licensedesk.directory import service as directory
from licensedesk.licensing import processing
from licensedesk.licensing import service as licensing
from tests.world import PLAN, make_world

pytestmark = pytest.mark.slow

SIZE = 200_000
MEMORY_BOUND = 8 * 1024 * 1024  # bytes of Python allocations at the peak of the fan-out
REQUEST_BOUND = 5.0  # seconds


def timed(fn: Any) -> Any:
    started = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - started
    assert elapsed < REQUEST_BOUND, f"took {elapsed:.1f} s"
    return result


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_group_of_200k_members_fans_out_in_bounded_memory_and_reads_stay_paged(
    ctx: Context, backend: str
) -> None:
    w = make_world(ctx)
    t = w.tenant
    g = scale_groups.build_large_group(ctx.db, t, SIZE)
    billing.create_subscription(ctx, t, PLAN, SIZE)

    tracemalloc.start()
    try:
        result = licensing.assign(ctx, t, PLAN, groups=[g.company])
        assert (result.needed, result.available) == (SIZE, SIZE)
        assert processing.drain(ctx) == 1  # one job: the group's
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"peak of Python allocations during the fan-out: {peak / 1e6:.2f} MB")
    assert peak < MEMORY_BOUND, f"the fan-out held {peak / 1e6:.1f} MB of Python objects at its peak"

    [status] = timed(lambda: licensing.group_licenses(ctx, t, g.company))
    assert (status.processing_state, status.members_total, status.members_seated) == ("Complete", SIZE, SIZE)
    row = timed(lambda: licensing.license_overview(ctx, t, PLAN))
    assert (row.assigned, row.available, row.reserved) == (SIZE, 0, 0)

    member = scale_groups.user_id(SIZE // 2)
    [lic] = timed(lambda: licensing.user_licenses(ctx, t, member))
    assert lic.state == "Active"
    assert lic.sources == [{"type": "group", "groupId": g.company, "groupName": "Company"}]

    # the group and its members, a page at a time, in id order
    assert timed(lambda: directory.get_group(ctx, t, g.everyone)).display_name == "Everyone"
    first = timed(lambda: directory.list_members(ctx, t, g.everyone, limit=100))
    assert [m.id for m in first.items] == [scale_groups.user_id(i) for i in range(100)]
    second = timed(lambda: directory.list_members(ctx, t, g.everyone, cursor=first.next_cursor, limit=100))
    assert [m.id for m in second.items] == [scale_groups.user_id(i) for i in range(100, 200)]
    reachable = timed(lambda: directory.list_members(ctx, t, g.company, transitive=True, limit=100))
    assert [(m.type, m.id) for m in reachable.items[:2]] == [
        ("group", g.everyone),
        ("user", scale_groups.user_id(0)),
    ]
    assert len(reachable.items) == 100 and reachable.next_cursor is not None
