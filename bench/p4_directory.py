"""SPEC P4: one tenant with 1,000,000 users and 100,000 groups. Measures, through the services:
- user search: `directory.list_users(search=prefix, limit=20)` for a few hundred random prefixes (1-6
  characters) of real first names, last names and userPrincipalNames of the tenant's users: p95 <= 20 ms;
- the licenses overview (`licensing.licenses_overview`): p95 <= 10 ms;
- a user's licenses (`licensing.user_licenses`), half of them users who hold licenses: p95 <= 5 ms;
and, for information, the portal's one search field over users and groups (`directory.search`).

The directory: 100,000 groups nested four levels deep (100 divisions > 1,000 departments > 10,000 teams >
88,900 sub-teams), each user a direct member of 3 sub-teams (3,000,000 memberships), 1 in 100 users
inactive. Three plans have pools: Pro (60,000 seats, assigned to 10 departments, ~30,000 users through
groups), Basic (20,000 seats, assigned directly to 5,000 users) and Enterprise (1,000 seats, assigned with
allowPartial to a department of ~3,000, so ~2,000 wait).

Generating it takes about 25 minutes, so the database is cached and reused while the generator and the
sizes are unchanged (data.data_key) and, migrated to the head, its schema is exactly the code's
(data.schema_matches, the migration drift test's check): on SQLite the file bench/data/p4-<key>.db
(git-ignored); on PostgreSQL the database `licensedesk_bench_p4` on the benchmark server, kept between
runs (its COMMENT holds the key; drop it to reclaim the space). Timings are taken on the warm database,
several passes with fresh random inputs each; the figure is the median of the passes' p95.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from sqlalchemy import select

from bench import data
from bench.report import Row, SqlTrace, median, ms, percentile
from licensedesk.billing import service as billing
from licensedesk.context import Context
from licensedesk.db.engine import Database
from licensedesk.db.schema import groups as groups_table
from licensedesk.db.schema import licenses, users
from licensedesk.directory import service as directory
from licensedesk.licensing import processing
from licensedesk.licensing import service as licensing
from licensedesk.tenancy import service as tenancy

USERS, GROUPS = 1_000_000, 100_000
QUICK_USERS, QUICK_GROUPS = 20_000, 2_000
MEMBERSHIPS_PER_USER = 3
TENANT = "bench-p4"
PRO, BASIC, ENTERPRISE = "innofalls-charts-pro", "innofalls-charts-basic", "innofalls-charts-enterprise"
SAMPLES = 300  # queries of each kind per pass
WARMUP = 30
BARS = {"search": 0.020, "overview": 0.010, "user_licenses": 0.005}  # seconds, p95 (SPEC section 9)


def _levels(n_groups: int) -> list[int]:
    sizes = [n_groups // 1000, n_groups // 100, n_groups // 10]
    sizes = [max(1, s) for s in sizes]
    return [*sizes, n_groups - sum(sizes)]


def build(url: str, n_users: int, n_groups: int, console: Console) -> None:
    ctx = Context(db=Database(url))
    try:
        data.ensure_catalog(ctx)
        tenant = tenancy.create_tenant(ctx, TENANT, "Bench P4")
        rng = random.Random(f"p4-{n_users}-{n_groups}")
        levels = _levels(n_groups)
        starts = [sum(levels[:i]) for i in range(len(levels))]
        with data.bulk_writer(ctx.db) as writer, data.progress_bar(console) as progress:
            user_set = data.add_users(
                writer, tenant.id, n_users, rng=rng, progress=progress, inactive_every=100
            )
            group_set = data.add_groups(
                writer, tenant.id, data.group_names(rng, n_groups), rng=rng, progress=progress
            )
            edges = [
                (starts[lvl - 1] + j * levels[lvl - 1] // levels[lvl], starts[lvl] + j)
                for lvl in range(1, len(levels))
                for j in range(levels[lvl])
            ]
            data.nest_groups(writer, tenant.id, edges, group_set, rng=rng, progress=progress)
            leaves, first_leaf = levels[-1], starts[-1]

            def memberships() -> Any:
                for u in range(n_users):
                    for leaf in rng.sample(range(leaves), MEMBERSHIPS_PER_USER):
                        yield first_leaf + leaf, u

            data.add_user_members(
                writer,
                tenant.id,
                memberships(),
                n_users * MEMBERSHIPS_PER_USER,
                user_set,
                group_set,
                rng=rng,
                progress=progress,
            )
        data.finish(ctx.db)  # statistics, as autovacuum would have them after provisioning
        console.print("[dim]P4: subscriptions and assignments through the services[/dim]")
        scale = n_users / USERS
        departments = group_set.ids[starts[1] : starts[1] + levels[1]]
        licensed = departments[: max(1, len(departments) // 100)]
        needed = licensing.assign(ctx, tenant.id, PRO, groups=licensed, dry_run=True).needed
        billing.create_subscription(ctx, tenant.id, PRO, max(int(60_000 * scale), needed + 100))
        billing.create_subscription(ctx, tenant.id, BASIC, max(100, int(20_000 * scale)))
        billing.create_subscription(ctx, tenant.id, ENTERPRISE, max(10, int(1_000 * scale)))
        licensing.assign(ctx, tenant.id, PRO, groups=licensed)
        direct = rng.sample(user_set.ids, max(50, int(5_000 * scale)))
        licensing.assign(ctx, tenant.id, BASIC, users=direct)
        licensing.assign(ctx, tenant.id, ENTERPRISE, groups=[departments[-1]], allow_partial=True)
        processing.drain(ctx)
        data.finish(ctx.db)
    finally:
        ctx.db.dispose()


def prepare(backend: str, quick: bool, console: Console) -> str:
    n_users, n_groups = (QUICK_USERS, QUICK_GROUPS) if quick else (USERS, GROUPS)
    name = f"p4-{n_users}"
    key = data.data_key(name, n_users, n_groups, MEMBERSHIPS_PER_USER)
    url, ready = data.cached_database(backend, name, key)
    if ready:
        console.print(f"[dim]P4 {backend}: reusing the cached database ({key})[/dim]")
        return url
    console.print(
        f"[dim]P4 {backend}: generating {n_users:,} users and {n_groups:,} groups (cached as {key})[/dim]"
    )
    t0 = time.perf_counter()
    build(url, n_users, n_groups, console)
    console.print(f"[dim]P4 {backend}: generated in {time.perf_counter() - t0:.0f} s[/dim]")
    data.mark_ready(backend, url, name, key)
    return url


# ---------------------------------------------------------------- inputs


def _random_rows(
    ctx: Context, tenant_id: str, rng: random.Random, n: int, stmt_of: Callable[[str], Any]
) -> list[Any]:
    """n rows picked uniformly by a random id (ids are random UUIDs)."""
    out = []
    with ctx.db.read() as conn:
        while len(out) < n:
            row = conn.execute(stmt_of(data.new_id(rng))).first()
            if row is not None:
                out.append(row)
    return out


def search_prefixes(ctx: Context, tenant_id: str, rng: random.Random, n: int) -> list[str]:
    """What admins type: the first 1-6 characters of a user's first name, last name or userPrincipalName."""
    rows = _random_rows(
        ctx,
        tenant_id,
        rng,
        n,
        lambda r: (
            select(users.c.user_principal_name, users.c.display_name)
            .where(users.c.tenant_id == tenant_id, users.c.id >= r)
            .order_by(users.c.id)
            .limit(1)
        ),
    )
    out = []
    for upn, display in rows:
        first, *_, last = display.split()
        source = rng.choice((first, last, upn))
        out.append(source[: rng.randint(1, 6)])
    return out


def group_prefixes(ctx: Context, tenant_id: str, rng: random.Random, n: int) -> list[str]:
    g = groups_table
    rows = _random_rows(
        ctx,
        tenant_id,
        rng,
        n,
        lambda r: (
            select(g.c.display_name).where(g.c.tenant_id == tenant_id, g.c.id >= r).order_by(g.c.id).limit(1)
        ),
    )
    return [rng.choice(name.split())[: rng.randint(1, 6)] for (name,) in rows]


def license_holders_and_others(ctx: Context, tenant_id: str, rng: random.Random, n: int) -> list[str]:
    holders = _random_rows(
        ctx,
        tenant_id,
        rng,
        n // 2,
        lambda r: (
            select(licenses.c.user_id)
            .where(licenses.c.tenant_id == tenant_id, licenses.c.user_id >= r)
            .order_by(licenses.c.user_id)
            .limit(1)
        ),
    )
    others = _random_rows(
        ctx,
        tenant_id,
        rng,
        n - n // 2,
        lambda r: (
            select(users.c.id)
            .where(users.c.tenant_id == tenant_id, users.c.id >= r)
            .order_by(users.c.id)
            .limit(1)
        ),
    )
    ids = [r[0] for r in holders + others]
    rng.shuffle(ids)
    return ids


# ---------------------------------------------------------------- timing


def timed(fn: Callable[[Any], Any], inputs: Sequence[Any]) -> list[tuple[float, Any]]:
    out = []
    for x in inputs:
        t0 = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t0, x))
    return out


def run(backend: str, *, quick: bool, passes: int, console: Console, trace_sql: bool = False) -> list[Row]:
    url = prepare(backend, quick, console)
    ctx = Context(db=Database(url))
    measured: dict[str, list[list[tuple[float, Any]]]] = {
        k: [] for k in ("search", "portal", "overview", "user_licenses")
    }
    traces: dict[str, SqlTrace] = {}
    try:
        t = tenancy.get_tenant(ctx, TENANT).id
        calls: dict[str, Callable[[Any], Any]] = {
            "search": lambda q: directory.list_users(ctx, t, search=q, limit=20),
            "portal": lambda q: directory.search(ctx, t, q, limit=20),
            "overview": lambda _: licensing.licenses_overview(ctx, t),
            "user_licenses": lambda u: licensing.user_licenses(ctx, t, u),
        }
        for p in range(passes + 1):  # pass 0 warms up
            rng = random.Random(f"p4-queries-{p}")
            n = WARMUP if p == 0 else SAMPLES
            user_qs = search_prefixes(ctx, t, rng, n)
            inputs = {
                "search": user_qs,
                "portal": user_qs[: n * 3 // 4] + group_prefixes(ctx, t, rng, n - n * 3 // 4),
                "overview": list(range(n)),
                "user_licenses": license_holders_and_others(ctx, t, rng, n),
            }
            for kind, fn in calls.items():
                if trace_sql and p == passes:
                    traces[kind] = SqlTrace()
                    with traces[kind].attached(ctx.db.engine):
                        result = timed(fn, inputs[kind])
                else:
                    result = timed(fn, inputs[kind])
                if p > 0:
                    measured[kind].append(result)
    finally:
        ctx.db.dispose()

    what = {
        "search": "user search p95: list_users(search=1-6 char prefix, limit=20)",
        "portal": "portal search p95: users and groups, limit=20",
        "overview": "licenses overview p95",
        "user_licenses": "a user's licenses p95",
    }
    size = f"{QUICK_USERS:,} users" if quick else "1M users, 100k groups"
    rows = []
    for kind, runs in measured.items():
        p95s = [percentile([s for s, _ in r], 95) for r in runs]
        figure = median(p95s)
        everything = [x for r in runs for x in r]
        secs_all = [s for s, _ in everything]
        worst = sorted(everything, key=lambda x: -x[0])[:5]
        details = [
            f"{len(everything)} calls in {len(runs)} passes; p95 per pass: {', '.join(ms(x) for x in p95s)}",
            f"all calls: p50 {ms(percentile(secs_all, 50))}, p95 {ms(percentile(secs_all, 95))}, "
            f"p99 {ms(percentile(secs_all, 99))}, max {ms(max(secs_all))}",
        ]
        if kind in ("search", "portal"):
            details.append("slowest: " + ", ".join(f"{x!r} {ms(s)}" for s, x in worst))
        if kind in traces:
            details += traces[kind].top(8)
        bar = BARS.get(kind)
        rows.append(
            Row(
                "P4",
                f"{what[kind]} ({size})",
                backend,
                ms(figure),
                f"<= {bar * 1000:.0f} ms" if bar else "",
                (figure <= bar) if bar else None,
                details,
            )
        )
    return rows
