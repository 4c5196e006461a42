"""P1: run-time check throughput over HTTP (wrk -c32, loopback, one server process, a valid JWT) against
a bare ASGI app answering a constant JSON body under the same uvicorn settings, side by side, alternating.
Bars: throughput ratio >= 0.5; p99 <= 2 x the bare app's p99."""

from __future__ import annotations

import httpx
from rich.console import Console

from bench import servers
from bench.report import Row, median
from licensedesk.billing import service as billing
from licensedesk.catalog import service as catalog
from licensedesk.checks.service import Checker
from licensedesk.clock import SystemClock
from licensedesk.context import Context
from licensedesk.db.changes import ChangeFeed
from licensedesk.db.engine import Database
from licensedesk.directory import service as directory
from licensedesk.licensing import service as licensing
from licensedesk.tenancy import service as tenancy

PRODUCT = "innofalls-charts"
PLAN = "innofalls-charts-pro"


def seed(url: str) -> str:
    """A tenant, the product, a licensed user; answers that user's dev-issuer token."""
    db = Database(url)
    ctx = Context(db=db, clock=SystemClock())
    catalog.create_product(ctx, PRODUCT, "Innofalls Charts", "api://innofalls-charts")
    catalog.create_plan(ctx, PRODUCT, PLAN, "Pro", "innofalls.charts.pro")
    tenant = tenancy.create_tenant(ctx, "contoso", "Contoso")
    billing.create_subscription(ctx, tenant.id, PLAN, 10)
    user = directory.create_user(ctx, tenant.id, "ann@contoso.com", "Ann", external_id="oid-ann")
    licensing.assign(ctx, tenant.id, PLAN, users=[user.id])
    token = Checker(ctx, ChangeFeed(db), public_url="http://bench", dev_issuer=True).mint_dev_token(
        tenant.id, "ann@contoso.com", PRODUCT
    )
    db.dispose()
    return token


def run(backend: str, url: str, *, quick: bool, repeats: int, console: Console) -> list[Row]:
    token = seed(url)
    seconds = 5 if quick else 10
    ours, bare = [], []
    with servers.licensedesk_server(url) as base, servers.bare_server() as bare_base:
        check_url = f"{base}/v1/licensing/{PRODUCT}/servicePlans"
        headers = {"Authorization": f"Bearer {token}"}
        warm = httpx.get(check_url, headers=headers, timeout=10)
        assert warm.status_code == 200 and warm.json()["plans"][0]["state"] == 1, warm.text
        for i in range(repeats):
            console.print(f"  P1 {backend}: round {i + 1}/{repeats}")
            bare.append(servers.wrk(f"{bare_base}/", seconds=seconds))
            ours.append(servers.wrk(check_url, seconds=seconds, headers=headers))
    errors = sum(r.non_2xx + r.errors for r in ours)
    rps, bare_rps = (
        median([r.requests_per_second for r in ours]),
        median([r.requests_per_second for r in bare]),
    )
    p99, bare_p99 = median([r.p99_ms for r in ours]), median([r.p99_ms for r in bare])
    ratio = rps / bare_rps
    details = [
        f"round {i + 1}: check {o.requests_per_second:.0f} req/s p99 {o.p99_ms:.2f} ms; bare "
        f"{b.requests_per_second:.0f} req/s p99 {b.p99_ms:.2f} ms"
        for i, (o, b) in enumerate(zip(ours, bare, strict=True))
    ]
    return [
        Row(
            "P1",
            "check throughput vs bare ASGI (wrk -c32)",
            backend,
            f"{rps:.0f} vs {bare_rps:.0f} req/s = {ratio:.2f}",
            ">= 0.5",
            ratio >= 0.5 and errors == 0,
            details,
        ),
        Row(
            "P1",
            "check p99 vs bare p99 under the same load",
            backend,
            f"{p99:.2f} vs {bare_p99:.2f} ms = {p99 / bare_p99:.2f}x",
            "<= 2x",
            p99 <= 2 * bare_p99,
            [],
        ),
    ]
