"""P6: memory. The resident set of one server process serving run-time checks for many users, with the
1,000,000-user directory of P4 in its database. Bar: <= 400 MiB.

Tokens for N distinct users (half of them license holders) are minted by the dev issuer; each is checked
twice (a cache miss, then a hit), so the process holds N validated tokens and N cached answers."""

from __future__ import annotations

import random

import httpx
from rich.console import Console
from sqlalchemy import select

from bench import p4_directory, servers
from bench.report import Row
from licensedesk.checks.service import Checker
from licensedesk.clock import SystemClock
from licensedesk.context import Context
from licensedesk.db.changes import ChangeFeed
from licensedesk.db.engine import Database
from licensedesk.db.schema import licenses, tenants, users

PRODUCT = "innofalls-charts"


def _users(db: Database, n: int, rng: random.Random) -> tuple[str, list[str]]:
    with db.read() as conn:
        tenant_id = conn.execute(select(tenants.c.id).order_by(tenants.c.created_at).limit(1)).scalar_one()
        holders = (
            conn.execute(
                select(users.c.user_principal_name)
                .join(
                    licenses, (licenses.c.tenant_id == users.c.tenant_id) & (licenses.c.user_id == users.c.id)
                )
                .where(users.c.tenant_id == tenant_id)
                .limit(n // 2)
            )
            .scalars()
            .all()
        )
        others = (
            conn.execute(
                select(users.c.user_principal_name)
                .where(users.c.tenant_id == tenant_id)
                .offset(rng.randrange(0, 500_000))
                .limit(n - len(holders))
            )
            .scalars()
            .all()
        )
    return tenant_id, list(dict.fromkeys([*holders, *others]))


def run(backend: str, *, quick: bool, console: Console) -> list[Row]:
    url = p4_directory.prepare(backend, quick, console)
    n = 2_000 if quick else 20_000
    db = Database(url)
    ctx = Context(db=db, clock=SystemClock())
    tenant_id, upns = _users(db, n, random.Random(6))
    checker = Checker(ctx, ChangeFeed(db), public_url="http://bench", dev_issuer=True)
    console.print(f"  P6 {backend}: minting {len(upns):,} user tokens")
    tokens = [checker.mint_dev_token(tenant_id, upn, PRODUCT) for upn in upns]
    db.dispose()
    with servers.licensedesk_server(url) as base:
        pid = servers.server_pid(base)
        assert pid is not None, "no server process found"
        idle = servers.rss_mib(pid)
        check = f"{base}/v1/licensing/{PRODUCT}/servicePlans"
        licensed = 0
        with httpx.Client(timeout=30) as client:
            for round_ in ("miss", "hit"):
                console.print(f"  P6 {backend}: {len(tokens):,} checks ({round_})")
                for token in tokens:
                    r = client.get(check, headers={"Authorization": f"Bearer {token}"})
                    r.raise_for_status()
                    licensed += bool(r.json()["plans"]) and round_ == "hit"
        peak = servers.rss_mib(pid)
    return [
        Row(
            "P6",
            f"server RSS after checks of {len(tokens):,} users (1M in the database)",
            backend,
            f"{peak:.0f} MiB (idle {idle:.0f} MiB)",
            "<= 400 MiB",
            peak <= 400,
            [f"{licensed:,} of {len(tokens):,} users licensed; every token checked twice (miss, then hit)"],
        )
    ]
