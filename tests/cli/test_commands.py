"""The CLI against the test database: the three exact commands print their result alone on stdout."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from licensedesk.auth import service as auth
from licensedesk.cli import app
from licensedesk.licensing import service as licensing
from licensedesk.tenancy import service as tenancy
from tests.world import PLAN, make_world

runner = CliRunner()


@pytest.fixture
def env(database_url, monkeypatch):
    monkeypatch.setenv("LICENSEDESK_DATABASE_URL", database_url)
    from licensedesk.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_tenant_create_prints_the_id_alone(env, ctx):
    result = run("tenant", "create", "acme", "--name", "Acme Corp")
    assert result.exit_code == 0
    tenant_id = result.stdout.strip()
    assert tenancy.get_tenant(ctx, "acme").id == tenant_id
    assert result.stdout == tenant_id + "\n"


def test_token_create_prints_a_working_secret_alone(env, ctx):
    make_world(ctx, "acme")
    result = run("token", "create", "--role", "reader", "--tenant", "acme", "--name", "ci")
    secret = result.stdout.strip()
    assert result.exit_code == 0 and result.stdout == secret + "\n"
    principal = auth.authenticate(ctx, secret)
    assert principal is not None and principal.roles == {"reader"}
    operator = run("token", "create", "--role", "operator").stdout.strip()
    assert auth.authenticate(ctx, operator).is_operator


def test_refusals_exit_non_zero_with_a_message(env, ctx):
    make_world(ctx, "acme")
    result = run("token", "create", "--role", "operator", "--tenant", "acme")
    assert result.exit_code == 2 and result.stdout == ""
    assert "operator token takes no tenant" in result.stderr
    result = run("tenant", "create", "acme", "--name", "again")
    assert result.exit_code == 2 and "already exists" in result.stderr


def test_licenses_show_assign_unassign_and_audit_export(env, ctx, tmp_path):
    w = make_world(ctx, "acme")
    w.buy(3)
    user = w.user("ann")
    result = run("licenses", "assign", PLAN, "--tenant", "acme", "--user", "ann@contoso.com")
    assert result.exit_code == 0 and "needed 1, available 3" in result.stdout
    assert w.state(user) == "Active"
    shown = run("licenses", "show", "--tenant", "acme")
    assert "Pro" in shown.stdout and "Active" in shown.stdout
    idle = run("licenses", "idle", PLAN, "--tenant", "acme", "--days", "30")
    assert "ann@contoso.com" in idle.stdout and "never" in idle.stdout
    result = run("licenses", "unassign", PLAN, "--tenant", "acme", "--user", user)
    assert result.exit_code == 0 and w.state(user) is None
    refused = run("licenses", "unassign", PLAN, "--tenant", "acme", "--user", user)
    assert refused.exit_code == 2 and "not_assigned" in refused.stderr
    out = tmp_path / "audit.csv"
    assert run("audit", "export", "--tenant", "acme", "--output", str(out)).exit_code == 0
    text = out.read_text()
    assert text.startswith("id,at,actorType")
    assert "license.unassigned" in text and "license.assigned" in text
    assert licensing.licenses_overview(ctx, "acme")[0].assigned == 0


def test_serve_freezes_the_collector_after_startup_unless_told_not_to(env, monkeypatch):
    import uvicorn

    from licensedesk.settings import Settings

    seen: list[bool] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: seen.append(Settings().gc_freeze))
    monkeypatch.setenv("LICENSEDESK_GC_FREEZE", "x")  # so that teardown restores what was there (nothing)
    monkeypatch.delenv("LICENSEDESK_GC_FREEZE")
    monkeypatch.setenv("LICENSEDESK_PUBLIC_URL", "http://127.0.0.1:8999")
    assert run("serve", "--port", "8999").exit_code == 0
    monkeypatch.setenv("LICENSEDESK_GC_FREEZE", "0")
    assert run("serve", "--port", "8999").exit_code == 0
    assert seen == [True, False]
