"""A real `licensedesk serve` process on a free port and a fresh SQLite file, bootstrapped with the CLI,
walking the vendor help page's flow over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

BIN = Path(sys.executable).parent / "licensedesk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def server(tmp_path):
    env = {
        **os.environ,
        "LICENSEDESK_DATABASE_URL": f"sqlite:///{tmp_path / 'e2e.db'}",
        "LICENSEDESK_WORKER_POLL_SECONDS": "0.2",
    }
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/v1/ready", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else "server exited"
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.1)
    yield base, env
    proc.terminate()
    proc.wait(timeout=15)


def wait_complete(client: httpx.Client, path: str) -> dict:
    deadline = time.monotonic() + 15
    while True:
        status = client.get(path).json()["items"][0]
        if status["processingState"] == "Complete":
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.05)


def test_help_page_flow_against_a_real_server(server):
    base, env = server
    # the three exact commands print their result alone on stdout
    tenant_id = cli(env, "tenant", "create", "acme", "--name", "Acme Corp").strip()
    assert len(tenant_id) == 36
    operator = cli(env, "token", "create", "--role", "operator").strip()
    admin = cli(env, "token", "create", "--role", "global_admin", "--tenant", "acme", "--name", "e2e").strip()
    assert operator.startswith("ld_") and admin.startswith("ld_") and "\n" not in admin

    op = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {operator}"})
    c = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {admin}"})
    assert (
        op.post(
            "/v1/products",
            json={"id": "innofalls-charts", "name": "Innofalls Charts", "audience": "api://innofalls-charts"},
        ).status_code
        == 201
    )
    assert (
        op.post(
            "/v1/products/innofalls-charts/plans",
            json={"id": "pro", "name": "Pro", "spIdentifier": "innofalls.charts.pro"},
        ).status_code
        == 201
    )
    # buy 5 seats
    assert c.post("/v1/tenants/acme/subscriptions", json={"planId": "pro", "quantity": 5}).status_code == 201
    users = []
    for i in range(6):
        r = c.post(
            "/v1/tenants/acme/users",
            json={"userPrincipalName": f"user{i}@acme.com", "displayName": f"User {i}"},
        )
        assert r.status_code == 201
        users.append(r.json()["id"])
    emea = c.post(
        "/v1/tenants/acme/groups", json={"displayName": "Finance-EMEA", "members": {"users": users[:2]}}
    ).json()
    finance = c.post(
        "/v1/tenants/acme/groups",
        json={"displayName": "Finance", "members": {"users": users[2:], "groups": [emea["id"]]}},
    ).json()

    # a 6-member nested group on 5 seats is refused, naming needed and available
    r = c.post("/v1/tenants/acme/licenses/pro/assign", json={"groups": [finance["id"]]})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (r.json()["code"], r.json()["needed"], r.json()["available"]) == ("not_enough_licenses", 6, 5)
    r = c.post("/v1/tenants/acme/licenses/pro/assign", json={"groups": [finance["id"]], "dryRun": True})
    assert (r.status_code, r.json()["needed"], r.json()["wouldSucceed"]) == (200, 6, False)

    # assign as many as possible: 5 seated, 1 waiting, processed by the server's own worker
    r = c.post("/v1/tenants/acme/licenses/pro/assign", json={"groups": [finance["id"]], "allowPartial": True})
    assert r.status_code == 202 and r.json()["groups"][0]["processingState"] in (
        "Queued",
        "InProgress",
        "Complete",
    )
    status = wait_complete(c, f"/v1/tenants/acme/groups/{finance['id']}/licenses")
    assert (status["membersTotal"], status["membersSeated"], status["membersWithErrors"]) == (6, 5, 1)
    row = c.get("/v1/tenants/acme/licenses/pro").json()
    assert (row["purchased"], row["assigned"], row["available"], row["waiting"]) == (5, 5, 0, 1)

    # a seated member leaves: the waiting one is seated with no further action
    waiting = c.get("/v1/tenants/acme/licenses/pro/users", params={"state": "Error"}).json()["items"][0][
        "user"
    ]["id"]
    leaver = next(u for u in users[2:] if u != waiting)
    assert c.delete(f"/v1/tenants/acme/groups/{finance['id']}/members/{leaver}").status_code == 200
    deadline = time.monotonic() + 15
    while c.get("/v1/tenants/acme/licenses/pro").json()["waiting"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    states = {
        x["user"]["id"]: x["state"] for x in c.get("/v1/tenants/acme/licenses/pro/users").json()["items"]
    }
    assert states[waiting] == "Active" and leaver not in states

    # a license held only through a group cannot be removed on the user
    r = c.post("/v1/tenants/acme/licenses/pro/unassign", json={"users": [users[0]]})
    assert r.status_code == 409 and r.json()["code"] == "license_inherited"
    assert r.json()["groups"] == [{"id": finance["id"], "displayName": "Finance"}]

    # reassign moves a seat while the pool is full
    assert (
        c.post("/v1/tenants/acme/licenses/pro/unassign", json={"groups": [finance["id"]]}).status_code == 202
    )
    deadline = time.monotonic() + 15
    while c.get("/v1/tenants/acme/licenses/pro").json()["assigned"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert c.post("/v1/tenants/acme/licenses/pro/assign", json={"users": users[:5]}).status_code == 200
    r = c.post("/v1/tenants/acme/licenses/pro/reassign", json={"from": users[0], "to": "user5@acme.com"})
    assert r.status_code == 200 and r.json()["to"]["state"] == "Active"

    # the audit log shows each step
    actions = [e["action"] for e in c.get("/v1/tenants/acme/audit", params={"limit": 1000}).json()["items"]]
    for expected in (
        "license.assigned",
        "license.granted",
        "license.seated",
        "license.revoked",
        "license.unassigned",
        "license.reassigned",
        "group.member_removed",
    ):
        assert expected in actions
