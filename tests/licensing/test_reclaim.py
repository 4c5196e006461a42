"""Reclaiming idle seats: the dry run names exactly what a run takes; a run removes only DIRECT
assignments idle for more than idleDays (never-used ones counted from their claim), never a license held
through groups, hands the freed seats to waiting users, and audits each as license.reclaimed by the
system; the policy is off by default and, off, the worker does nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from licensedesk.app import create_app
from licensedesk.audit import service as audit
from licensedesk.auth import service as auth
from licensedesk.checks.service import UsageRecorder
from licensedesk.clock import FrozenClock
from licensedesk.errors import ValidationFailed
from licensedesk.licensing import reclaim
from licensedesk.licensing import service as licensing
from licensedesk.settings import Settings
from licensedesk.worker import Worker
from tests.api.support import Unchanged, assert_problem, bearer, db_state
from tests.world import PLAN, World, make_world

START = datetime(2026, 2, 1, 8, 0, 0)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def world(ctx) -> World:
    return make_world(ctx, "contoso")


def used(ctx, world: World, *user_ids: str) -> None:
    """The run-time check saw these users use the plan now (the usage recorder's own path)."""
    recorder = UsageRecorder(ctx)
    for u in user_ids:
        recorder.saw(world.tenant, PLAN, u)
    recorder.flush()


def sources(world: World, user_id: str) -> list[str] | None:
    for lic in licensing.user_licenses(world.ctx, world.tenant, user_id):
        if lic.plan_id == PLAN:
            return sorted(s.get("groupName", "direct") for s in lic.sources)
    return None


@pytest.fixture
def scene(ctx, clock, world):
    """Day 0: a, b, c, e directly assigned, c also through group Team, d only through Team; 6 seats.
    Day 5: e uses the product. Day 35: a uses it. Day 40: now."""
    world.buy(6)
    a, b, c, d, e = (world.user(n) for n in ("ana", "ben", "cai", "dot", "eve"))
    team = world.group("Team", users=[c, d])
    licensing.assign(ctx, world.tenant, PLAN, users=[a, b, c, e], groups=[team])
    world.drain()
    clock.advance(days=5)
    used(ctx, world, e)
    clock.advance(days=30)
    used(ctx, world, a)
    clock.advance(days=5)
    return {"a": a, "b": b, "c": c, "d": d, "e": e, "team": team}


def test_the_policy_is_off_by_default(ctx, world):
    policy = reclaim.get_policy(ctx, world.tenant)
    assert (policy.enabled, policy.idle_days, policy.updated_at) == (False, 90, None)


def test_the_dry_run_names_what_a_run_takes_and_changes_nothing(ctx, world, scene):
    reclaim.set_policy(ctx, world.tenant, enabled=False, idle_days=30)
    before = _rows(ctx)
    days, page = reclaim.preview(ctx, world.tenant)
    assert days == 30
    by_user = {c.user["id"]: c for c in page.items}
    # b never used it (claimed 40 days ago), c neither (direct and through Team), e last 35 days ago;
    # a used it 5 days ago; d holds it only through Team
    assert set(by_user) == {scene["b"], scene["c"], scene["e"]}
    assert by_user[scene["b"]].last_used_at is None and by_user[scene["b"]].claimed_at < START + timedelta(
        seconds=1
    )
    assert by_user[scene["e"]].last_used_at == START + timedelta(days=5)
    assert (
        by_user[scene["c"]].also_through_groups is True and by_user[scene["b"]].also_through_groups is False
    )
    assert {c.plan_id for c in page.items} == {PLAN}
    assert _rows(ctx) == before  # a dry run writes nothing
    # a longer idle period in the dry run: only the never-used ones
    _days, longer = reclaim.preview(ctx, world.tenant, idle_days=36)
    assert {c.user["id"] for c in longer.items} == {scene["b"], scene["c"]}

    result = reclaim.run(ctx, world.tenant)
    assert result.reclaimed == 3 and {c.user["id"] for c in result.items} == set(by_user)
    assert world.state(scene["b"]) is None and world.state(scene["e"]) is None
    # c keeps the license through the group, on the same seat; d and a are untouched
    assert world.state(scene["c"]) == "Active" and sources(world, scene["c"]) == ["Team"]
    assert world.state(scene["d"]) == "Active" and sources(world, scene["d"]) == ["Team"]
    assert world.state(scene["a"]) == "Active" and sources(world, scene["a"]) == ["direct"]
    events = audit.query(ctx, world.tenant, action="license.reclaimed").items
    assert sorted(e.target["id"] for e in events) == sorted(by_user)
    assert {e.actor["type"] for e in events} == {"system"}
    kept = next(e for e in events if e.target["id"] == scene["c"])
    assert kept.details["keptThroughGroups"] is True and kept.details["idleDays"] == 30
    # a second run finds nothing left
    assert reclaim.run(ctx, world.tenant).reclaimed == 0
    assert reclaim.preview(ctx, world.tenant)[1].items == []


def _rows(ctx):  # type: ignore[no-untyped-def]
    return db_state(SimpleNamespace(ctx=ctx))


def test_a_user_holding_the_plan_only_through_groups_is_never_touched(ctx, clock, world):
    world.buy(3)
    members = world.users("g", 3)
    inner = world.group("Inner", users=members[:2])
    outer = world.group("Outer", users=members[2:], groups=[inner])
    licensing.assign(ctx, world.tenant, PLAN, groups=[outer])
    world.drain()
    clock.advance(days=400)
    assert reclaim.preview(ctx, world.tenant, idle_days=1)[1].items == []
    reclaim.set_policy(ctx, world.tenant, enabled=True, idle_days=1)
    assert reclaim.run(ctx, world.tenant).reclaimed == 0
    assert world.states(members) == ["Active"] * 3
    assert audit.query(ctx, world.tenant, action="license.reclaimed").items == []


def test_freed_seats_go_to_waiting_users_who_are_not_reclaimed_at_once(ctx, clock, world):
    world.buy(2)
    idle = world.users("idle", 2)
    licensing.assign(ctx, world.tenant, PLAN, users=idle)
    clock.advance(seconds=1)
    waiting = world.users("wait", 2)
    licensing.assign(ctx, world.tenant, PLAN, users=waiting, allow_partial=True)
    assert world.states(waiting) == ["Error", "Error"]
    clock.advance(days=31)
    reclaim.set_policy(ctx, world.tenant, enabled=True, idle_days=30)
    # waiting users hold no seat: nothing of theirs to reclaim
    assert {c.user["id"] for c in reclaim.preview(ctx, world.tenant)[1].items} == set(idle)
    assert reclaim.run(ctx, world.tenant).reclaimed == 2
    assert world.states(idle) == [None, None]
    assert world.states(waiting) == ["Active", "Active"]  # the seating rule seated them
    # they got their seats just now: not idle yet, though their claims are 31 days old
    assert reclaim.preview(ctx, world.tenant)[1].items == []
    clock.advance(days=31)
    assert {c.user["id"] for c in reclaim.preview(ctx, world.tenant)[1].items} == set(waiting)


def test_the_worker_reclaims_only_when_the_policy_is_on(ctx, clock, world):
    world.buy(2)
    user = world.user("sleepy")
    licensing.assign(ctx, world.tenant, PLAN, users=[user])
    clock.advance(days=100)
    worker = Worker(ctx, reclaim_seconds=0)
    worker.tick()  # the policy is off (no policy at all)
    assert world.state(user) == "Active"
    reclaim.set_policy(ctx, world.tenant, enabled=False, idle_days=30)
    assert reclaim.run_policies(ctx) == 0 and world.state(user) == "Active"
    reclaim.set_policy(ctx, world.tenant, enabled=True, idle_days=30)
    worker.tick()
    assert world.state(user) is None
    assert reclaim.get_policy(ctx, world.tenant).last_run_at == clock.now()
    assert [e.actor["type"] for e in audit.query(ctx, world.tenant, action="license.reclaimed").items] == [
        "system"
    ]


def test_idle_days_out_of_range_are_refused(ctx, world):
    for bad in (0, -1, 36501, True, "30", None):
        with pytest.raises(ValidationFailed):
            reclaim.set_policy(ctx, world.tenant, enabled=True, idle_days=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed):
        reclaim.set_policy(ctx, world.tenant, enabled="yes", idle_days=30)  # type: ignore[arg-type]
    assert reclaim.get_policy(ctx, world.tenant).updated_at is None


# ---------------------------------------------------------------- over HTTP


@pytest.fixture
def http(ctx, database_url, world) -> Iterator[tuple[TestClient, dict[str, str]]]:
    tokens = {r: auth.create_token(ctx, r, tenant_ref=world.tenant)[1] for r in ("global_admin", "reader")}
    app = create_app(
        Settings(database_url=database_url), db=ctx.db, clock=ctx.clock, run_worker=False, migrate=False
    )
    with TestClient(app) as client:
        yield client, tokens


def test_the_policy_dry_run_and_run_over_http(ctx, clock, world, http):
    client, tokens = http
    admin, reader = bearer(tokens["global_admin"]), bearer(tokens["reader"])
    base = f"/v1/tenants/{world.tenant}/reclaim"
    world.buy(2)
    user = world.user("idle")
    licensing.assign(ctx, world.tenant, PLAN, users=[user])
    clock.advance(days=10)
    assert client.get(f"{base}/policy", headers=reader).json() == {
        "enabled": False,
        "idleDays": 90,
        "updatedAt": None,
        "lastRunAt": None,
    }
    r = client.put(f"{base}/policy", json={"enabled": True, "idleDays": 7}, headers=admin)
    assert r.status_code == 200 and r.json()["enabled"] is True and r.json()["idleDays"] == 7
    preview = client.get(f"{base}/preview", headers=reader).json()
    assert preview["idleDays"] == 7 and preview["nextCursor"] is None
    [item] = preview["items"]
    assert item["user"] == {"id": user, "userPrincipalName": "idle@contoso.com", "displayName": "Idle"}
    assert item["planId"] == PLAN and item["lastUsedAt"] is None and item["claimedAt"].endswith("Z")
    assert item["state"] == "Active" and item["alsoThroughGroups"] is False
    assert client.get(f"{base}/preview?idleDays=11", headers=reader).json()["items"] == []
    assert_problem(client.post(f"{base}/run", headers=reader), 403, "forbidden")
    run = client.post(f"{base}/run", headers=admin)
    assert run.status_code == 200, run.text
    assert run.json()["reclaimed"] == 1 and run.json()["items"][0]["user"]["id"] == user
    assert world.state(user) is None


BAD = [
    ("PUT", "/policy", {"enabled": True, "idleDays": -1}, 422),
    ("PUT", "/policy", {"enabled": True, "idleDays": 0}, 422),
    ("PUT", "/policy", {"enabled": True, "idleDays": 36501}, 422),
    ("PUT", "/policy", {"enabled": True, "idleDays": "30"}, 400),
    ("PUT", "/policy", {"enabled": "true", "idleDays": 30}, 400),
    ("PUT", "/policy", {"idleDays": 30}, 400),
    ("PUT", "/policy", {"enabled": True, "idleDays": 30, "dryRun": True}, 400),
    ("PUT", "/policy", {"enabled": True, "idleDays": 30.5}, 400),
    ("GET", "/preview?idleDays=-1", None, 422),
    ("GET", "/preview?idleDays=abc", None, 400),
    ("GET", "/preview?cursor=%%%", None, 400),
    ("GET", "/preview?limit=5000", None, 422),
]


def test_bad_input_is_refused_and_changes_nothing(ctx, world, http):
    client, tokens = http

    holder = SimpleNamespace(
        ctx=ctx,
        client=client,
        tenant=world.tenant,
        tokens={"operator": auth.create_token(ctx, "operator")[1]},
    )
    unchanged = Unchanged(holder)
    for method, path, body, status in BAD:
        r = client.request(
            method,
            f"/v1/tenants/{world.tenant}/reclaim{path}",
            json=body,
            headers=bearer(tokens["global_admin"]),
        )
        assert_problem(r, status)
    unchanged.check("bad reclaim input")


def test_the_cli_dry_run_then_apply(ctx, world, database_url, monkeypatch):
    from typer.testing import CliRunner

    from licensedesk.cli import app
    from licensedesk.settings import get_settings

    monkeypatch.setenv("LICENSEDESK_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        world.buy(2)
        user = world.user("cli")
        licensing.assign(ctx, world.tenant, PLAN, users=[user])
        reclaim.set_policy(ctx, world.tenant, enabled=False, idle_days=30)
        runner = CliRunner()
        # the CLI runs on the real clock: the seat (claimed at START, in 2026) is long idle by now
        dry = runner.invoke(app, ["licenses", "reclaim", "--tenant", "contoso"], catch_exceptions=False)
        assert dry.exit_code == 0 and "dry run: 1 direct assignments" in dry.stdout and "never" in dry.stdout
        assert world.state(user) == "Active"
        done = runner.invoke(
            app, ["licenses", "reclaim", "--tenant", "contoso", "--apply"], catch_exceptions=False
        )
        assert done.exit_code == 0 and "reclaimed 1 " in done.stdout
        assert world.state(user) is None
    finally:
        get_settings.cache_clear()
