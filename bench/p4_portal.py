"""P4, for information: the admin portal's pages on the P4 directory (1,000,000 users, 100,000 groups; see
bench/p4_directory.py, whose cached database this reuses). SPEC section 6 asks that the portal work at that
size, every list paged server-side; there is no bar in SPEC section 9, and the portal aims at 100 ms a page.

Each page is fetched whole through the application (FastAPI's in-process test client: routing, the session
check, the services, Jinja2 rendering; no network), signed in as a global admin, for fresh random inputs each
pass: the Licenses table; a plan's Users tab (first page and the next), its Groups tab; the Users browser
(first page, a page deep inside, a search for a 1-6 character prefix); the Groups browser (the same); a user's
page (half of them license holders); a group's page (random groups, and the divisions at the top of the
nesting); the Audit log (first page, filtered by action, by an action prefix, by a target). The figure is
the median of the passes' p95.
"""

from __future__ import annotations

import random
import time
from urllib.parse import quote, urlencode

from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import select

from bench.p4_directory import (
    BASIC,
    ENTERPRISE,
    PRO,
    TENANT,
    _random_rows,
    group_prefixes,
    license_holders_and_others,
    prepare,
    search_prefixes,
)
from bench.report import Row, median, ms, percentile
from licensedesk.app import create_app
from licensedesk.auth import service as auth
from licensedesk.context import Context
from licensedesk.db.engine import Database
from licensedesk.db.schema import group_group_members
from licensedesk.db.schema import groups as groups_table
from licensedesk.db.schema import users as users_table
from licensedesk.licensing import service as licensing
from licensedesk.pagination import encode_cursor
from licensedesk.settings import Settings
from licensedesk.tenancy import service as tenancy

SAMPLES = 40  # pages of each kind per pass
QUICK_SAMPLES = 15
WARMUP = 5
AIM = 0.100  # seconds: the portal's aim for a page, not a SPEC bar
TOKEN_NAME = "bench p4 portal"
PLANS = (PRO, BASIC, ENTERPRISE)

WHAT = {
    "licenses": "Licenses table",
    "plan_users": "plan, Users tab, first page",
    "plan_users_next": "plan, Users tab, second page",
    "plan_groups": "plan, Groups tab",
    "users": "Users browser, first page",
    "users_deep": "Users browser, a page deep inside",
    "users_search": "Users browser, search (1-6 char prefix)",
    "groups": "Groups browser, first page",
    "groups_deep": "Groups browser, a page deep inside",
    "groups_search": "Groups browser, search (1-6 char prefix)",
    "user": "a user's page",
    "group": "a group's page (random groups)",
    "group_top": "a group's page (divisions, and the groups holding licenses)",
    "audit": "Audit, first page",
    "audit_action": "Audit, filtered by a recent action (license.assigned)",
    "audit_action_prefix": "Audit, filtered by an action prefix (license.*)",
    "audit_target": "Audit, filtered by target",
}


def _inputs(ctx: Context, t: str, rng: random.Random, n: int, top_groups: list[str]) -> dict[str, list[str]]:
    """The addresses to fetch, n of each kind."""
    u, g = users_table, groups_table
    plans = [PLANS[i % len(PLANS)] for i in range(n)]
    second = {}
    for plan in PLANS:
        page = licensing.licensed_users(ctx, t, plan, limit=50)
        second[plan] = page.next_cursor
    user_keys = _random_rows(
        ctx,
        t,
        rng,
        n,
        lambda r: select(u.c.upn_key).where(u.c.tenant_id == t, u.c.id >= r).order_by(u.c.id).limit(1),
    )
    group_keys = _random_rows(
        ctx,
        t,
        rng,
        n,
        lambda r: (
            select(g.c.name_key, g.c.id).where(g.c.tenant_id == t, g.c.id >= r).order_by(g.c.id).limit(1)
        ),
    )
    targets = license_holders_and_others(ctx, t, rng, n)
    return {
        "licenses": ["/admin/licenses"] * n,
        "plan_users": [f"/admin/licenses/{p}?tab=users" for p in plans],
        "plan_users_next": [
            f"/admin/licenses/{p}?" + urlencode({"tab": "users", "cursor": second[p] or ""}) for p in plans
        ],
        "plan_groups": [f"/admin/licenses/{p}?tab=groups" for p in plans],
        "users": ["/admin/users"] * n,
        "users_deep": ["/admin/users?cursor=" + encode_cursor(k) for (k,) in user_keys],
        "users_search": ["/admin/users?q=" + quote(q) for q in search_prefixes(ctx, t, rng, n)],
        "groups": ["/admin/groups"] * n,
        "groups_deep": ["/admin/groups?cursor=" + encode_cursor(k, i) for k, i in group_keys],
        "groups_search": ["/admin/groups?q=" + quote(q) for q in group_prefixes(ctx, t, rng, n)],
        "user": [f"/admin/users/{x}" for x in license_holders_and_others(ctx, t, rng, n)],
        "group": [f"/admin/groups/{i}" for _, i in group_keys],
        "group_top": [f"/admin/groups/{rng.choice(top_groups)}" for _ in range(n)],
        "audit": ["/admin/audit"] * n,
        "audit_action": ["/admin/audit?action=license.assigned"] * n,
        "audit_action_prefix": ["/admin/audit?action=license.*"] * n,
        "audit_target": [f"/admin/audit?targetId={x}" for x in targets],
    }


def _timed(client: TestClient, urls: list[str]) -> list[tuple[float, str]]:
    out = []
    for url in urls:
        t0 = time.perf_counter()
        answer = client.get(url)
        elapsed = time.perf_counter() - t0
        if answer.status_code != 200:
            raise RuntimeError(f"GET {url}: {answer.status_code} {answer.text[:300]}")
        out.append((elapsed, url))
    return out


def run(backend: str, *, quick: bool, passes: int, console: Console) -> list[Row]:
    url = prepare(backend, quick, console)
    db = Database(url)
    ctx = Context(db=db)
    measured: dict[str, list[list[tuple[float, str]]]] = {k: [] for k in WHAT}
    token_id = None
    try:
        t = tenancy.get_tenant(ctx, TENANT).id
        token, secret = auth.create_token(ctx, "global_admin", tenant_ref=t, name=TOKEN_NAME)
        token_id = token.id
        settings = Settings(
            database_url=url,
            log_level="warning",
            check_rate_per_token=0,
            check_rate_per_address=0,
            api_rate_per_credential=0,
            auth_failures_per_address=0,
        )
        app = create_app(settings, db=db, run_worker=False, migrate=False)
        with TestClient(app, follow_redirects=False) as client:
            signed_in = client.post("/admin/sign-in", data={"token": secret})
            if signed_in.status_code != 303:
                raise RuntimeError(f"sign-in refused: {signed_in.status_code} {signed_in.text[:300]}")
            top_groups = _divisions(ctx, t) + [
                g.group_id for plan in PLANS for g in licensing.plan_groups(ctx, t, plan, limit=100).items
            ]
            samples = QUICK_SAMPLES if quick else SAMPLES
            for p in range(passes + 1):  # pass 0 warms up
                rng = random.Random(f"p4-portal-{p}")
                n = WARMUP if p == 0 else samples
                inputs = _inputs(ctx, t, rng, n, top_groups)
                for kind in WHAT:
                    result = _timed(client, inputs[kind])
                    if p > 0:
                        measured[kind].append(result)
    finally:
        if token_id is not None:
            auth.revoke_token(ctx, TENANT, token_id)
        db.dispose()

    size = f"{data_size(quick)}"
    rows = []
    for kind, runs in measured.items():
        p95s = [percentile([s for s, _ in r], 95) for r in runs]
        figure = median(p95s)
        everything = [x for r in runs for x in r]
        secs_all = [s for s, _ in everything]
        worst = sorted(everything, key=lambda x: -x[0])[:3]
        details = [
            f"{len(everything)} pages in {len(runs)} passes; p95 per pass: {', '.join(ms(x) for x in p95s)}",
            f"all pages: p50 {ms(percentile(secs_all, 50))}, p95 {ms(percentile(secs_all, 95))}, "
            f"max {ms(max(secs_all))}",
            "slowest: " + ", ".join(f"{u} {ms(s)}" for s, u in worst),
        ]
        rows.append(
            Row(
                "P4",
                f"portal page p95: {WHAT[kind]} ({size}; aim <= {AIM * 1000:.0f} ms)",
                backend,
                ms(figure),
                "",
                None,
                details,
            )
        )
    return rows


def data_size(quick: bool) -> str:
    from bench.p4_directory import QUICK_USERS

    return f"{QUICK_USERS:,} users" if quick else "1M users, 100k groups"


def _divisions(ctx: Context, t: str) -> list[str]:
    """The groups at the top of the nesting (the first level the generator makes: no parent)."""
    g, m = groups_table, group_group_members
    with ctx.db.read() as conn:
        nested = select(m.c.member_group_id).where(m.c.tenant_id == t)
        rows = conn.execute(select(g.c.id).where(g.c.tenant_id == t, g.c.id.not_in(nested)).limit(100)).all()
    return [r[0] for r in rows]
