"""The `licensedesk` command (Typer + Rich). Every command brings the schema up to date first.

`tenant create` prints the new tenant's id alone on stdout, because scripts use it.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from licensedesk.context import SYSTEM, Actor, Context
from licensedesk.db.engine import Database
from licensedesk.db.migrate import upgrade
from licensedesk.errors import DomainError
from licensedesk.settings import get_settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="licensedesk: per-user licensing back end."
)
db_app = typer.Typer(no_args_is_help=True, help="The database.")
tenant_app = typer.Typer(no_args_is_help=True, help="Tenants (customer organisations).")
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")

err = Console(stderr=True)
CLI_ACTOR = Actor("system", "cli", "licensedesk CLI")


def open_context() -> Context:
    """The database of LICENSEDESK_DATABASE_URL, migrated to the current schema."""
    db = Database(get_settings().database_url)
    upgrade(db)
    return Context(db=db, actor=CLI_ACTOR)


def fail(exc: DomainError) -> None:
    err.print(f"[red]error[/red] ({exc.code}): {exc.detail}")
    raise typer.Exit(2)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Bring the schema of LICENSEDESK_DATABASE_URL up to date."""
    open_context()
    err.print("[green]schema is up to date[/green]")


@tenant_app.command("create")
def tenant_create(
    slug: str = typer.Argument(..., help="url-safe, unique"),
    name: str = typer.Option(..., "--name", help="the organisation's name"),
    external_tenant_id: str | None = typer.Option(None, "--external-tenant-id", help="e.g. the Entra tid"),
    issuer: str | None = typer.Option(None, "--issuer"),
    jwks_uri: str | None = typer.Option(None, "--jwks-uri"),
) -> None:
    """Create a tenant; prints its id alone on stdout."""
    from licensedesk.tenancy import service as tenancy

    ctx = open_context()
    try:
        tenant = tenancy.create_tenant(
            ctx, slug, name, external_tenant_id=external_tenant_id, issuer=issuer, jwks_uri=jwks_uri
        )
    except DomainError as exc:
        fail(exc)
        return
    sys.stdout.write(tenant.id + "\n")


__all__ = ["SYSTEM", "app"]
