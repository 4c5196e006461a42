"""P2: time to effect. A direct assignment through server process A; the check through process B on the
same database reflects it. Bar: p99 <= 1 s (the reference: minutes to an hour)."""

from __future__ import annotations

import time

import httpx
from rich.console import Console

from bench import servers
from bench.p1_check import PLAN, PRODUCT, seed
from bench.report import Row, median, ms, percentile
from licensedesk.auth import service as auth
from licensedesk.clock import SystemClock
from licensedesk.context import Context
from licensedesk.db.engine import Database


def run(backend: str, url: str, *, quick: bool, console: Console) -> list[Row]:
    token = seed(url)
    db = Database(url)
    admin = auth.create_token(Context(db=db, clock=SystemClock()), "global_admin", tenant_ref="contoso")[1]
    db.dispose()
    rounds = 20 if quick else 100
    delays: list[float] = []
    with servers.licensedesk_server(url) as a, servers.licensedesk_server(url) as b:
        api = httpx.Client(
            base_url=f"{a}/v1/tenants/contoso/licenses/{PLAN}",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        )
        check = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10)
        check_url = f"{b}/v1/licensing/{PRODUCT}/servicePlans"

        def state() -> int | None:
            plans = check.get(check_url).json()["plans"]
            return plans[0]["state"] if plans else None

        assert state() == 1
        for i in range(rounds):
            action, expected = ("unassign", None) if i % 2 == 0 else ("assign", 1)
            r = api.post(f"/{action}", json={"users": ["ann@contoso.com"]})
            r.raise_for_status()
            done = time.perf_counter()
            while state() != expected:
                if time.perf_counter() - done > 10:
                    raise RuntimeError(f"{action} not seen by process B after 10 s")
                time.sleep(0.002)
            delays.append(time.perf_counter() - done)
        console.print(f"  P2 {backend}: {rounds} changes")
    p99 = percentile(delays, 99)
    return [
        Row(
            "P2",
            "time to effect, process A -> check on B",
            backend,
            f"p50 {ms(median(delays))}, p99 {ms(p99)}, max {ms(max(delays))}",
            "p99 <= 1 s",
            p99 <= 1.0,
            [f"{len(delays)} alternating assign/unassign through A, polled on B every 2 ms"],
        )
    ]
