"""The `licensedesk` command (Typer + Rich). Every command works on the database that
LICENSEDESK_DATABASE_URL names, bringing its schema up to date first.

Three commands are exact, because scripts use them: `tenant create` prints the new tenant's id alone on
stdout, `token create` the token's secret alone, `token user` a dev-issuer user token alone.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from licensedesk.context import Actor, Context
from licensedesk.db.engine import Database
from licensedesk.db.migrate import upgrade
from licensedesk.errors import DomainError
from licensedesk.settings import get_settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="licensedesk: licensing for per-user products."
)
db_app = typer.Typer(no_args_is_help=True, help="The database.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants (customer organisations).")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
licenses_app = typer.Typer(no_args_is_help=True, help="Licenses: the overview, assigning, unassigning.")
audit_app = typer.Typer(no_args_is_help=True, help="The audit log.")
users_app = typer.Typer(no_args_is_help=True, help="Users of a tenant's directory.")
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(token_app, name="token")
app.add_typer(licenses_app, name="licenses")
app.add_typer(audit_app, name="audit")
app.add_typer(users_app, name="users")

out = Console()
err = Console(stderr=True, soft_wrap=True)
CLI_ACTOR = Actor("system", "cli", "licensedesk CLI")


def open_context() -> Context:
    """The database of LICENSEDESK_DATABASE_URL, migrated to the current schema."""
    db = Database(get_settings().database_url)
    upgrade(db)
    return Context(db=db, actor=CLI_ACTOR)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a service; a refusal becomes a one-line message on stderr and exit code 2."""
    try:
        return fn(*args, **kwargs)
    except DomainError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.detail}")
        raise typer.Exit(2) from None


# ---------------------------------------------------------------- db, serve, worker


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the schema of LICENSEDESK_DATABASE_URL up to date."""
    open_context()
    err.print("[green]schema is up to date[/green]")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="port to listen on"),
    workers: int = typer.Option(1, min=1, max=64, help="server processes (each runs a job worker)"),
    demo: bool = typer.Option(False, "--demo", help="seed the demo tenant Contoso and print sign-in tokens"),
    no_worker: bool = typer.Option(
        False, "--no-worker", help="serve only; jobs are left to separate `licensedesk worker` processes"
    ),
) -> None:
    """Serve the API (and the job worker) with uvicorn; migrations are applied first."""
    import uvicorn

    os.environ.setdefault("LICENSEDESK_PUBLIC_URL", f"http://{host}:{port}")
    os.environ.setdefault("LICENSEDESK_GC_FREEZE", "1")  # a long-running server: see Settings.gc_freeze
    if no_worker:
        # the app factory reads it in every server process uvicorn starts
        os.environ["LICENSEDESK_RUN_WORKER"] = "0"
    if demo:
        os.environ.setdefault("LICENSEDESK_DEV_ISSUER", "1")
    get_settings.cache_clear()
    ctx = open_context()
    if demo:
        from licensedesk import demo as demo_data

        with err.status("seeding the demo tenant Contoso..."):
            seeded = demo_data.seed(ctx)
        from licensedesk.web import sessions

        sign_in = sessions.create_sign_in_link(ctx, seeded.tenant_id, name="demo sign-in link")
        _banner(host, port, seeded, sign_in)
    ctx.db.dispose()
    from licensedesk import logs

    logs.configure(get_settings().log_level)
    from licensedesk.server import GuardedHttpToolsProtocol

    uvicorn.run(
        "licensedesk.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        # httptools with a limit on the size of a request's head and on the time to send it (slow clients)
        http=GuardedHttpToolsProtocol,
    )


def _banner(host: str, port: int, seeded: Any, sign_in: str) -> None:
    base = f"http://{host}:{port}"
    lines = [
        f"[bold]licensedesk demo[/bold] at {base}  (tenant [bold]contoso[/bold], {seeded.tenant_id})",
        "",
        f"Admin portal      {base}/admin/sign-in/link?code={sign_in}   (one-time, 15 minutes)",
        f"API docs          {base}/docs",
        f"Licenses          {base}/v1/tenants/contoso/licenses",
        f"Demo visual       {base}/demo/visual?user=mira.kaur@contoso.com   (licensed)",
        f"                  {base}/demo/visual?user=chiara.conti@contoso.com (no license)",
        "",
        f"operator token    {seeded.operator_token}",
        f"Contoso admin     {seeded.admin_token}",
        "",
        "try:",
        f'  curl -s -H "Authorization: Bearer {seeded.admin_token}" {base}/v1/tenants/contoso/licenses',
    ]
    # plain lines, no box: tokens and commands must copy and paste whole
    out.rule("[bold]licensedesk[/bold]")
    for line in lines:
        out.print(line, soft_wrap=True, highlight=False)
    out.rule()


@app.command()
def worker() -> None:
    """Run a job worker in the foreground (any number may share a database)."""
    from licensedesk import logs
    from licensedesk.worker import Worker

    ctx = open_context()
    settings = get_settings()
    logs.configure(settings.log_level)
    w = Worker(ctx, poll_seconds=settings.worker_poll_seconds, lease_seconds=settings.job_lease_seconds)
    signal.signal(signal.SIGTERM, lambda *_: w.stop(timeout=0))
    err.print("[green]worker running[/green] (Ctrl-C stops it)")
    try:
        w.run_forever()
    except KeyboardInterrupt:
        w.stop(timeout=0)


# ---------------------------------------------------------------- tenants and tokens


@tenant_app.command("create")
def tenant_create(
    slug: str = typer.Argument(..., help="url-safe, unique"),
    name: str = typer.Option(..., "--name", help="the organisation's name"),
    external_tenant_id: str | None = typer.Option(None, "--external-tenant-id", help="e.g. the Entra tid"),
    issuer: str | None = typer.Option(None, "--issuer", help="the tenant's OIDC issuer"),
    jwks_uri: str | None = typer.Option(None, "--jwks-uri", help="its JWKS URI"),
) -> None:
    """Create a tenant; prints its id alone on stdout."""
    from licensedesk.tenancy import service as tenancy

    ctx = open_context()
    tenant = _run(
        tenancy.create_tenant,
        ctx,
        slug,
        name,
        external_tenant_id=external_tenant_id,
        issuer=issuer,
        jwks_uri=jwks_uri,
    )
    sys.stdout.write(tenant.id + "\n")


@token_app.command("create")
def token_create(
    role: str = typer.Option(
        ..., "--role", help="operator, global_admin, license_admin, billing_admin, reader, scim"
    ),
    tenant: str | None = typer.Option(None, "--tenant", help="tenant id or slug (not for operator)"),
    name: str | None = typer.Option(None, "--name", help="what the token is for"),
) -> None:
    """Create an API token; prints its secret alone on stdout (it is not kept: store it now)."""
    from licensedesk.auth import service as auth

    ctx = open_context()
    _token, secret = _run(auth.create_token, ctx, role, tenant_ref=tenant, name=name)
    sys.stdout.write(secret + "\n")


# ---------------------------------------------------------------- licenses


@licenses_app.command("show")
def licenses_show(tenant: str = typer.Option(..., "--tenant", help="tenant id or slug")) -> None:
    """The Licenses page: purchased, assigned, available and waiting per plan."""
    from licensedesk.licensing import service as licensing

    ctx = open_context()
    rows = _run(licensing.licenses_overview, ctx, tenant)
    table = Table(title=f"Licenses of {tenant}")
    for col in ("product", "plan", "purchased", "assigned", "available", "waiting", "status"):
        table.add_column(
            col, justify="right" if col in ("purchased", "assigned", "available", "waiting") else "left"
        )
    for r in rows:
        table.add_row(
            r.product_name,
            f"{r.plan_name} ({r.plan_id})",
            str(r.purchased),
            str(r.assigned),
            str(r.available),
            str(r.waiting),
            r.status,
        )
    out.print(table)


def _print_assign(result: Any) -> None:
    table = Table(title=f"{result.plan_id}: needed {result.needed}, available {result.available}")
    table.add_column("target")
    table.add_column("state")
    for u in result.users:
        table.add_row(f"user {u['userId']}", str(u["state"]) + (f" ({u['error']})" if u.get("error") else ""))
    for g in result.groups:
        table.add_row(f"group {g['groupId']}", str(g["processingState"]))
    out.print(table)


@licenses_app.command("assign")
def licenses_assign(
    plan: str = typer.Argument(..., help="plan id"),
    tenant: str = typer.Option(..., "--tenant"),
    user: list[str] = typer.Option([], "--user", help="user id or userPrincipalName (repeatable)"),
    group: list[str] = typer.Option([], "--group", help="group id (repeatable)"),
    allow_partial: bool = typer.Option(False, "--allow-partial", help="seat as many as possible"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only say what it would need"),
) -> None:
    """Assign a plan to users and groups (all or nothing unless --allow-partial)."""
    from licensedesk.licensing import service as licensing

    ctx = open_context()
    _print_assign(
        _run(
            licensing.assign,
            ctx,
            tenant,
            plan,
            users=user,
            groups=group,
            allow_partial=allow_partial,
            dry_run=dry_run,
        )
    )


@licenses_app.command("unassign")
def licenses_unassign(
    plan: str = typer.Argument(..., help="plan id"),
    tenant: str = typer.Option(..., "--tenant"),
    user: list[str] = typer.Option([], "--user", help="user id or userPrincipalName (repeatable)"),
    group: list[str] = typer.Option([], "--group", help="group id (repeatable)"),
) -> None:
    """Remove direct or group assignments of a plan."""
    from licensedesk.licensing import service as licensing

    ctx = open_context()
    result = _run(licensing.unassign, ctx, tenant, plan, users=user, groups=group)
    out.print(f"unassigned {len(result.users)} users and {len(result.groups)} groups from {result.plan_id}")


@licenses_app.command("idle")
def licenses_idle(
    plan: str = typer.Argument(..., help="plan id"),
    tenant: str = typer.Option(..., "--tenant"),
    days: int = typer.Option(30, "--days", min=0, help="not used for this many days"),
) -> None:
    """Seats not used for N days (never-used seats included)."""
    from licensedesk.licensing import service as licensing

    ctx = open_context()
    table = Table(title=f"{plan}: seats idle for {days} days or more")
    for col in ("user", "state", "sources", "last used"):
        table.add_column(col)
    cursor = None
    while True:
        page = _run(licensing.licensed_users, ctx, tenant, plan, idle_days=days, cursor=cursor, limit=1000)
        for x in page.items:
            sources = ", ".join(s.get("groupName", "direct") for s in x.sources)
            table.add_row(
                x.user["userPrincipalName"],
                x.state,
                sources,
                x.last_used_at.isoformat() if x.last_used_at else "never",
            )
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    out.print(table)


@licenses_app.command("reclaim")
def licenses_reclaim(
    tenant: str = typer.Option(..., "--tenant"),
    days: int | None = typer.Option(
        None, "--days", min=1, help="idle for more days (dry run only; default: the policy's idleDays)"
    ),
    apply: bool = typer.Option(False, "--apply", help="reclaim now, with the tenant's policy"),
) -> None:
    """Direct assignments idle for more than N days: a dry run by default, --apply reclaims them (only
    direct assignments; licenses held through groups are never touched)."""
    from licensedesk.licensing import reclaim

    ctx = open_context()
    if apply:
        if days is not None:
            err.print(
                "[red]error[/red]: --apply uses the tenant's policy; set its idleDays instead of --days"
            )
            raise typer.Exit(2)
        result = _run(reclaim.run, ctx, tenant)
        items, days_used = result.items, result.idle_days
        title = f"reclaimed {result.reclaimed} direct assignments idle for more than {days_used} days"
    else:
        items, cursor = [], None
        while True:
            days_used, page = _run(reclaim.preview, ctx, tenant, idle_days=days, cursor=cursor, limit=1000)
            items.extend(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        title = f"dry run: {len(items)} direct assignments idle for more than {days_used} days"
    table = Table(title=title)
    for col in ("plan", "user", "state", "claimed", "last used", "keeps it through groups"):
        table.add_column(col)
    for c in items:
        table.add_row(
            c.plan_id,
            c.user["userPrincipalName"],
            c.state,
            c.claimed_at.isoformat(),
            c.last_used_at.isoformat() if c.last_used_at else "never",
            "yes" if c.also_through_groups else "",
        )
    out.print(table)


# ---------------------------------------------------------------- audit


@audit_app.command("export")
def audit_export(
    tenant: str = typer.Option(..., "--tenant"),
    output: Path | None = typer.Option(None, "--output", "-o", help="file to write (default: stdout)"),
    action: str | None = typer.Option(None, "--action", help="e.g. license.assigned or license.*"),
    plan: str | None = typer.Option(None, "--plan"),
    target: str | None = typer.Option(None, "--target", help="target id"),
) -> None:
    """Export the audit log as CSV, newest first."""
    from licensedesk.audit import service as audit
    from licensedesk.tenancy import service as tenancy

    ctx = open_context()
    tenant_id = _run(tenancy.get_tenant, ctx, tenant).id
    chunks = audit.export_csv(ctx, tenant_id, action=action, plan_id=plan, target_id=target)
    if output is None:
        for chunk in chunks:
            sys.stdout.write(chunk)
        return
    with output.open("w", encoding="utf-8", newline="") as f:
        for chunk in chunks:
            f.write(chunk)
    err.print(f"[green]wrote[/green] {output}")


@token_app.command("user")
def token_user(
    tenant: str = typer.Argument(..., help="tenant id or slug"),
    upn: str = typer.Argument(..., help="the user's userPrincipalName"),
    product: str = typer.Option(..., "--product", help="product id (the token's audience is the product's)"),
) -> None:
    """Mint a dev-issuer user access token (needs the dev issuer: --demo or LICENSEDESK_DEV_ISSUER=1);
    prints it alone on stdout."""
    from licensedesk.checks.service import Checker
    from licensedesk.db.changes import ChangeFeed

    settings = get_settings()
    if not settings.dev_issuer:
        err.print("[red]error[/red]: the dev issuer is off; set LICENSEDESK_DEV_ISSUER=1 (--demo sets it)")
        raise typer.Exit(2)
    ctx = open_context()
    checker = Checker(ctx, ChangeFeed(ctx.db), public_url=settings.public_url, dev_issuer=True)
    sys.stdout.write(_run(checker.mint_dev_token, tenant, upn, product) + "\n")


marketplace_app = typer.Typer(no_args_is_help=True, help="Marketplace purchase events.")
app.add_typer(marketplace_app, name="marketplace")


@marketplace_app.command("send")
def marketplace_send(
    action: str = typer.Argument(
        ..., help="Subscribe, ChangeQuantity, ChangePlan, Suspend, Reinstate, Renew, Unsubscribe"
    ),
    subscription_id: str = typer.Option(..., "--subscription-id", help="the marketplace's subscription id"),
    tenant_id: str = typer.Option(..., "--tenant-id", help="the buyer's identity provider tenant id"),
    email: str = typer.Option(..., "--email", help="the buyer's e-mail"),
    object_id: str | None = typer.Option(None, "--object-id", help="the buyer's object id"),
    plan: str | None = typer.Option(None, "--plan"),
    quantity: int | None = typer.Option(None, "--quantity", min=1),
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="licensedesk's base URL"),
) -> None:
    """Send a signed test event (LICENSEDESK_MARKETPLACE_SECRET), as the marketplace would."""
    import json

    import httpx

    from licensedesk.billing import marketplace

    secret = get_settings().marketplace_secret
    if not secret:
        err.print("[red]error[/red]: set LICENSEDESK_MARKETPLACE_SECRET to the secret the server has")
        raise typer.Exit(2)
    body = json.dumps(
        marketplace.test_event(
            action,
            subscription_id,
            plan_id=plan,
            quantity=quantity,
            tenant_id=tenant_id,
            email=email,
            object_id=object_id,
        )
    ).encode()
    response = httpx.post(
        f"{url.rstrip('/')}/v1/marketplace/events",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Marketplace-Signature": marketplace.sign(secret, body),
        },
        timeout=30,
    )
    out.print(f"HTTP {response.status_code}")
    out.print_json(response.text)
    if response.status_code >= 400:
        raise typer.Exit(1)


# ---------------------------------------------------------------- directory import


@users_app.command("import")
def users_import(
    file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="CSV: userPrincipalName,displayName,externalId,groups"
    ),
    tenant: str = typer.Option(..., "--tenant", help="tenant id or slug"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check and count, change nothing"),
) -> None:
    """Import users and their groups from CSV (groups `;`-separated, created as needed). Idempotent:
    importing the same file again changes nothing. Rejected rows are listed with their row number."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from licensedesk.directory import importer

    ctx = open_context()
    size = file.stat().st_size
    with (
        file.open(newline="", encoding="utf-8-sig") as source,
        Progress(
            TextColumn("importing"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("bytes"),
            TimeElapsedColumn(),
            console=err,
        ) as progress,
    ):
        task = progress.add_task("import", total=size)

        def rejected(r: importer.Rejected) -> None:
            progress.console.print(f"row {r.row}: {r.reason}", markup=False, highlight=False)

        summary = _run(
            importer.import_users,
            ctx,
            tenant,
            source,
            dry_run=dry_run,
            on_reject=rejected,
            on_progress=lambda _rows: progress.update(
                task, completed=source.buffer.tell() if hasattr(source, "buffer") else 0
            ),
        )
        progress.update(task, completed=size)
    verb = "would be" if dry_run else "were"
    out.print(
        f"{summary.rows} rows: {summary.created} users {verb} created, {summary.updated} updated, "
        f"{summary.unchanged} unchanged; {summary.groups_created} groups {verb} created, "
        f"{summary.memberships_added} memberships added; {summary.rejected} rows rejected"
        + (" (dry run: nothing was changed)" if dry_run else ""),
        highlight=False,
    )
    if summary.rejected:
        raise typer.Exit(1)
