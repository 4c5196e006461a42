"""P5: SCIM provisioning against a real server process. Creating 10,000 users through SCIM, one POST each
(a few concurrent clients, as an identity provider's provisioning runs): >= 300 users/s. One PATCH adding
10,000 members to a licensed group, until the group's license status is Complete with every member
seated: <= 5 s."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from rich.console import Console

from bench import servers
from bench.report import Row, secs
from licensedesk.auth import service as auth
from licensedesk.billing import service as billing
from licensedesk.catalog import service as catalog
from licensedesk.clock import SystemClock
from licensedesk.context import Context
from licensedesk.db.engine import Database
from licensedesk.tenancy import service as tenancy

PRODUCT = "innofalls-charts"
PLAN = "innofalls-charts-pro"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CLIENTS = 4


def seed(url: str, seats: int) -> tuple[str, str]:
    """A tenant with a pool of `seats` seats; answers a scim token and a global_admin token."""
    db = Database(url)
    ctx = Context(db=db, clock=SystemClock())
    catalog.create_product(ctx, PRODUCT, "Innofalls Charts", "api://innofalls-charts")
    catalog.create_plan(ctx, PRODUCT, PLAN, "Pro", "innofalls.charts.pro")
    tenant = tenancy.create_tenant(ctx, "contoso", "Contoso")
    billing.create_subscription(ctx, tenant.id, PLAN, seats)
    scim = auth.create_token(ctx, "scim", tenant_ref=tenant.id, name="bench provisioning")[1]
    admin = auth.create_token(ctx, "global_admin", tenant_ref=tenant.id)[1]
    db.dispose()
    return scim, admin


def _create_users(base: str, token: str, n: int) -> tuple[float, list[str]]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/scim+json"}
    parts = [range(i, n, CLIENTS) for i in range(CLIENTS)]

    def client_run(indexes: range) -> list[str]:
        ids = []
        with httpx.Client(base_url=f"{base}/scim/v2/contoso/", headers=headers, timeout=30) as c:
            for i in indexes:
                r = c.post(
                    "Users",
                    json={
                        "schemas": [USER],
                        "userName": f"user{i:05d}@contoso.com",
                        "displayName": f"User {i}",
                        "externalId": f"oid-{i:05d}",
                        "active": True,
                        "name": {"givenName": "User", "familyName": str(i)},
                        "emails": [{"value": f"user{i:05d}@contoso.com", "type": "work", "primary": True}],
                    },
                )
                if r.status_code != 201:
                    raise RuntimeError(f"POST /Users answered {r.status_code}: {r.text}")
                ids.append(r.json()["id"])
        return ids

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        ids = [i for part in pool.map(client_run, parts) for i in part]
    return time.perf_counter() - started, ids


def _patch_members(base: str, scim: str, admin: str, user_ids: list[str]) -> tuple[float, float]:
    """Seconds until the PATCH answered, and until every member was seated."""
    headers = {"Authorization": f"Bearer {scim}", "Content-Type": "application/scim+json"}
    with (
        httpx.Client(base_url=f"{base}/scim/v2/contoso/", headers=headers, timeout=120) as c,
        httpx.Client(
            base_url=f"{base}/v1/tenants/contoso/", headers={"Authorization": f"Bearer {admin}"}
        ) as api,
    ):
        group = c.post("Groups", json={"schemas": [GROUP], "displayName": "Everyone", "members": []})
        group.raise_for_status()
        gid = group.json()["id"]
        api.post(f"licenses/{PLAN}/assign", json={"groups": [gid]}).raise_for_status()
        body = {
            "schemas": [PATCH],
            "Operations": [{"op": "Add", "path": "members", "value": [{"value": u} for u in user_ids]}],
        }
        started = time.perf_counter()
        r = c.patch(f"Groups/{gid}", json=body)
        if r.status_code not in (200, 204):
            raise RuntimeError(f"PATCH /Groups answered {r.status_code}: {r.text[:500]}")
        answered = time.perf_counter() - started
        while True:
            status = api.get(f"groups/{gid}/licenses").json()["items"][0]
            if status["processingState"] == "Complete" and status["membersSeated"] == len(user_ids):
                return answered, time.perf_counter() - started
            if time.perf_counter() - started > 120:
                raise RuntimeError(f"group processing not complete after 120 s: {status}")
            time.sleep(0.01)


def run(backend: str, url: str, *, quick: bool, console: Console) -> list[Row]:
    n = 1_000 if quick else 10_000
    scim, admin = seed(url, n)
    load_before = os.getloadavg()[0]
    with servers.licensedesk_server(url) as base:
        create_s, ids = _create_users(base, scim, n)
        console.print(f"  P5 {backend}: {n} users created in {secs(create_s)}")
        answered_s, patch_s = _patch_members(base, scim, admin, ids)
        console.print(
            f"  P5 {backend}: PATCH of {n} members answered in {secs(answered_s)},"
            f" all seated in {secs(patch_s)}"
        )
    rate = n / create_s
    # the machine is shared: the load around the run says how much of it the figures had
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (nproc {os.cpu_count()})"
    return [
        Row(
            "P5",
            f"SCIM: create {n:,} users, one POST each",
            backend,
            f"{rate:,.0f} users/s ({secs(create_s)})",
            ">= 300 users/s",
            rate >= 300,
            [f"{CLIENTS} concurrent clients against one `licensedesk serve` process", load],
        ),
        Row(
            "P5",
            f"SCIM: one PATCH adding {n:,} members to a licensed group, until all are seated",
            backend,
            secs(patch_s),
            "<= 5 s",
            patch_s <= 5.0,
            [
                "from sending the PATCH until the group license status is Complete, every member seated",
                f"the PATCH itself answered in {secs(answered_s)}",
                load,
            ],
        ),
    ]
