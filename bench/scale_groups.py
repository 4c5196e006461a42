"""Large groups (SPEC section 10, abuse): a group of 1,000,000 members, and a 1,000-level nesting chain.

Not one of SPEC section 9's bars, so not part of a full run: `python -m bench --only GROUPS` (with
`--quick`: 100,000 members and 300 levels).

1. A group of 1,000,000 members. `Everyone` holds the users directly and is nested in `Company`; the
   users are written with the bulk writer (plain, as tests/reliability/fanout_data.py writes them). A
   subscription of as many seats, the plan assigned to `Company` through the service, and a real
   `licensedesk worker` process fans it out: the time from the assign call until the status is Complete,
   and the worker's peak resident set (VmHWM) next to its resident set when idle before the job, which
   shows whether the members pass through the worker's memory (they should not: the fan-out is set-based
   SQL in the database). Then what an admin reads of such a group, each the median of 3 calls through the
   services the API and the portal's group page use: the group, the first and a later page of its direct
   members, the first page of `Company`'s transitive members, the group's license status, the pool's row,
   and one member's licenses.
2. A chain of 1,000 groups, each nested in the one above, link by link through `directory.add_members`
   (a transaction each, as the API does): the total and the slowest link; then the worst cut (the middle
   link: 250,000 ancestor / descendant pairs lose their path) and the worst link (mending it).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from bench import data
from bench.report import Row, median, ms, secs
from licensedesk.billing import service as billing
from licensedesk.clock import SystemClock
from licensedesk.context import Context
from licensedesk.db import schema
from licensedesk.db.engine import Database
from licensedesk.directory import service as directory
from licensedesk.licensing import service as licensing
from licensedesk.tenancy import service as tenancy

SIZE = 1_000_000
QUICK_SIZE = 100_000
DEPTH = 1000
QUICK_DEPTH = 300
PLAN = "innofalls-charts-basic"
BIN = Path(sys.executable).parent / "licensedesk"


@dataclass
class LargeGroup:
    tenant_id: str
    company: str  # holds `everyone` (nested); the plan is assigned here
    everyone: str  # holds every user directly
    size: int


def user_id(i: int) -> str:
    return f"{i:08d}-0000-4000-8000-00000000000a"


def build_large_group(db: Database, tenant_id: str, size: int) -> LargeGroup:
    """`size` plain users, all direct members of `Everyone`, which is nested in `Company`. Written in
    chunks: the generator never holds more than one chunk of rows."""
    at = data.PROVISIONED_AT
    rng = random.Random(f"large-{size}")
    with data.bulk_writer(db) as writer:
        groups = data.add_groups(writer, tenant_id, ["Company", "Everyone"], rng=rng, audit=False)
        data.nest_groups(writer, tenant_id, [(0, 1)], groups, rng=rng, audit=False)
        everyone = groups.ids[1]
        for start in range(0, size, data.CHUNK):
            chunk = range(start, min(size, start + data.CHUNK))
            rows = []
            for i in chunk:
                upn = f"member{i:07d}@{data.DOMAIN}"
                rows.append((tenant_id, user_id(i), upn, upn, f"Member {i}", None, True, at, at, at))
            writer.insert(schema.users, data.USER_COLUMNS, rows)
            writer.insert(
                schema.group_user_members,
                ("tenant_id", "group_id", "user_id", "added_at"),
                [(tenant_id, everyone, user_id(i), at) for i in chunk],
            )
            writer.commit()
    data.finish(db)
    return LargeGroup(tenant_id, groups.ids[0], everyone, size)


def _status(proc_id: int, field: str) -> int:
    """A memory figure of a process from /proc (kB)."""
    for line in Path(f"/proc/{proc_id}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{proc_id}/status")


def _mib(kb: int) -> str:
    return f"{kb / 1024:.0f} MiB"


def _timed(fn: Any, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return median(times)


def large_group(backend: str, url: str, size: int, console: Console) -> list[Row]:
    ctx = Context(db=Database(url), clock=SystemClock())
    what = f"group of {size:,} members"
    try:
        data.ensure_catalog(ctx, [PLAN])
        tenant = tenancy.create_tenant(ctx, "large", "Large")
        console.print(f"[dim]GROUPS {backend}: writing {size:,} users into one group[/dim]")
        t0 = time.perf_counter()
        g = build_large_group(ctx.db, tenant.id, size)
        console.print(f"[dim]GROUPS {backend}: written in {secs(time.perf_counter() - t0)}[/dim]")
        billing.create_subscription(ctx, g.tenant_id, PLAN, size)

        env = {
            **os.environ,
            "LICENSEDESK_DATABASE_URL": url,
            "LICENSEDESK_WORKER_POLL_SECONDS": "0.2",
            "LICENSEDESK_LOG_LEVEL": "warning",
        }
        worker = subprocess.Popen([str(BIN), "worker"], env=env, stdout=subprocess.DEVNULL)
        try:
            time.sleep(3)  # started, connected, polling
            idle_kb = _status(worker.pid, "VmRSS")
            t0 = time.perf_counter()
            licensing.assign(ctx, g.tenant_id, PLAN, groups=[g.company])
            assigned = time.perf_counter() - t0
            while True:
                [status] = licensing.group_licenses(ctx, g.tenant_id, g.company)
                if status.processing_state == "Complete":
                    break
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited ({worker.returncode})")
                time.sleep(0.2)
            fanout = time.perf_counter() - t0
            peak_kb = _status(worker.pid, "VmHWM")
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        problems = []
        if (status.members_total, status.members_seated, status.members_with_errors) != (size, size, 0):
            problems.append(f"group status {status}")
        row = licensing.license_overview(ctx, g.tenant_id, PLAN)
        if (row.assigned, row.available, row.reserved) != (size, 0, 0):
            problems.append(f"pool assigned={row.assigned} available={row.available} reserved={row.reserved}")

        member = user_id(size // 2)
        first = directory.list_members(ctx, g.tenant_id, g.everyone, limit=100)
        later_cursor = first.next_cursor
        reads = {
            "the group": lambda: directory.get_group(ctx, g.tenant_id, g.everyone),
            "direct members, first page of 100": lambda: directory.list_members(
                ctx, g.tenant_id, g.everyone, limit=100
            ),
            "direct members, second page": lambda: directory.list_members(
                ctx, g.tenant_id, g.everyone, cursor=later_cursor, limit=100
            ),
            "transitive members of Company, first page": lambda: directory.list_members(
                ctx, g.tenant_id, g.company, transitive=True, limit=100
            ),
            "group license status": lambda: licensing.group_licenses(ctx, g.tenant_id, g.company),
            "the pool's row": lambda: licensing.license_overview(ctx, g.tenant_id, PLAN),
            "a member's licenses": lambda: licensing.user_licenses(ctx, g.tenant_id, member),
        }
        [lic] = licensing.user_licenses(ctx, g.tenant_id, member)
        if lic.state != "Active" or lic.sources != [
            {"type": "group", "groupId": g.company, "groupName": "Company"}
        ]:
            problems.append(f"member's license {lic}")
        if len(first.items) != 100 or first.items[0].id != user_id(0):
            problems.append("the first page of members is not users 0..99")
        read_times = {name: _timed(fn) for name, fn in reads.items()}
    finally:
        ctx.db.dispose()

    console.print(
        f"[dim]GROUPS {backend}: fan-out {secs(fanout)}, worker idle {_mib(idle_kb)}, "
        f"peak {_mib(peak_kb)}[/dim]"
    )
    rows = [
        Row(
            "GROUPS",
            f"assign plan to a {what} -> Complete (one worker process)",
            backend,
            secs(fanout),
            "",
            False if problems else None,
            [f"assign call {secs(assigned)}", *problems],
        ),
        Row(
            "GROUPS",
            f"worker peak resident set during that fan-out (idle before: {_mib(idle_kb)})",
            backend,
            _mib(peak_kb),
            "",
            None,
        ),
    ]
    rows += [
        Row("GROUPS", f"{what}: {name} (median of 3)", backend, ms(t), "", None)
        for name, t in read_times.items()
    ]
    return rows


def chain(backend: str, url: str, depth: int, console: Console) -> list[Row]:
    ctx = Context(db=Database(url), clock=SystemClock())
    try:
        tenant = tenancy.create_tenant(ctx, "chain", "Chain")
        t = tenant.id
        with data.bulk_writer(ctx.db) as writer:
            names = [f"Level {i:04d}" for i in range(depth)]
            level = data.add_groups(writer, t, names, rng=random.Random("chain"), audit=False).ids
        links = []
        t0 = time.perf_counter()
        for i in range(1, depth):
            s = time.perf_counter()
            directory.add_members(ctx, t, level[i - 1], groups=[level[i]])
            links.append(time.perf_counter() - s)
        built = time.perf_counter() - t0
        half = depth // 2
        s = time.perf_counter()
        directory.remove_member(ctx, t, level[half - 1], level[half])
        cut = time.perf_counter() - s
        s = time.perf_counter()
        directory.add_members(ctx, t, level[half - 1], groups=[level[half]])
        mend = time.perf_counter() - s
    finally:
        ctx.db.dispose()
    pairs = half * (depth - half)
    console.print(f"[dim]GROUPS {backend}: chain of {depth} in {secs(built)}, cut {secs(cut)}[/dim]")
    return [
        Row(
            "GROUPS",
            f"{depth:,}-level chain, link by link through the service",
            backend,
            secs(built),
            "",
            None,
            [f"slowest link {ms(max(links))}, last 100 links median {ms(median(links[-100:]))}"],
        ),
        Row("GROUPS", f"cut its middle link ({pairs:,} closure pairs deleted)", backend, secs(cut), "", None),
        Row("GROUPS", f"mend it ({pairs:,} closure pairs written)", backend, secs(mend), "", None),
    ]


def run(backend: str, url: str, *, quick: bool, console: Console) -> list[Row]:
    rows = large_group(backend, url, QUICK_SIZE if quick else SIZE, console)
    rows += chain(backend, url, QUICK_DEPTH if quick else DEPTH, console)
    return rows
