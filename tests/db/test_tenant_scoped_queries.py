"""SPEC section 8: the schema can be distributed by tenant on Citus. Besides every tenant-owned table's
primary key starting with tenant_id (tests/db/test_migrations.py), that needs every query of the hot paths
to name its tenant: each tenant-owned table a statement reads or writes is constrained by its own
tenant_id column in a predicate (so Citus can route the statement to one shard, and joins are
co-located). One statement is cross-tenant by design, and named below: the worker's claim of a job.

The statements are the ones the engine really sends, recorded while the paths run: the run-time check's
slow path, a direct assign and unassign, a group assignment and its fan-out by the worker, a membership
change and its job, the licenses overview, a user's licenses and the users search."""

from __future__ import annotations

import re

from sqlalchemy import event

from licensedesk.checks.service import Checker
from licensedesk.db.changes import ChangeFeed
from licensedesk.db.schema import metadata
from licensedesk.directory import service as directory
from licensedesk.licensing import service as licensing
from tests.world import PLAN, make_world

TENANT_TABLES = {t.name for t in metadata.sorted_tables if "tenant_id" in t.c}
KEYWORDS = (
    "on", "where", "join", "left", "inner", "set", "values", "select", "group", "order", "limit",
    "using", "returning", "default", "cross", "natural", "full", "right", "outer", "union", "for",
)  # fmt: skip
# a table named after FROM / JOIN / UPDATE / INTO, with an optional alias (a word that is no keyword)
REFERENCE = re.compile(
    r"\b(?:FROM|JOIN|UPDATE|INTO)\s+\"?(\w+)\"?(?:\s+(?:AS\s+)?(?!(?:" + "|".join(KEYWORDS) + r")\b)(\w+))?",
    re.IGNORECASE,
)


# The one statement that is cross-tenant by design: a worker takes the oldest due job of any tenant. On
# Citus that is a multi-shard SELECT ... FOR UPDATE SKIP LOCKED, which Citus runs only in single-shard
# queries: the job queue would stay a local table of the coordinator (RELIABILITY.md, "on paper only").
CROSS_TENANT = re.compile(
    r"^SELECT jobs\.tenant_id, .*\s+FROM jobs\s+WHERE jobs\.state = "
    r".*ORDER BY jobs\.run_after, jobs\.created_at",
    re.DOTALL,
)


def _constrained(statement: str, name: str) -> bool:
    """`name.tenant_id` in a predicate (= or IN, on either side), not merely in a select list."""
    column = rf"\b{re.escape(name)}\.\"?tenant_id\"?"
    return bool(re.search(column + r"\s*(?:=|IN\b)", statement) or re.search(r"=\s*" + column, statement))


def unscoped(statement: str) -> list[str]:
    """The tenant-owned tables of a statement whose tenant_id it never names."""
    missing = []
    for table, alias in REFERENCE.findall(statement):
        if table not in TENANT_TABLES:
            continue
        names = {table} | ({alias} if alias else set())
        if not any(_constrained(statement, n) for n in names):
            if re.match(r"\s*INSERT\s+INTO", statement, re.IGNORECASE) and "tenant_id" in statement:
                continue  # an INSERT names tenant_id among its columns
            missing.append(table)
    return missing


def test_every_statement_of_the_hot_paths_names_its_tenant(ctx, db):  # type: ignore[no-untyped-def]
    w = make_world(ctx, "contoso")
    w.buy(50)
    users = w.users("u", 20)
    inner = w.group("Inner", users=users[:8])
    outer = w.group("Outer", users=users[8:14], groups=[inner])
    checker = Checker(ctx, ChangeFeed(db), public_url="http://test", dev_issuer=True)
    token = checker.mint_dev_token(w.tenant, "u000@contoso.com", "innofalls-charts")
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        licensing.assign(ctx, w.tenant, PLAN, users=users[:3])
        licensing.assign(ctx, w.tenant, PLAN, groups=[outer])
        w.drain()
        directory.add_members(ctx, w.tenant, inner, users=users[14:16])
        directory.remove_members(ctx, w.tenant, outer, users=[users[8]])
        w.drain()
        licensing.unassign(ctx, w.tenant, PLAN, users=users[:2])
        checker.service_plans(token, "innofalls-charts")
        licensing.license_overview(ctx, w.tenant, PLAN)
        licensing.user_licenses(ctx, w.tenant, users[0])
        directory.list_users(ctx, w.tenant, search="u01", limit=20)
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    touching = [s for s in statements if any(re.search(rf"\b{t}\b", s) for t in TENANT_TABLES)]
    assert len(touching) > 50
    claims = [s for s in touching if CROSS_TENANT.match(s)]
    assert claims, "the worker's claim of the next job was not recorded"
    offenders = {s: unscoped(s) for s in touching if unscoped(s) and s not in claims}
    assert not offenders, "\n\n".join(f"{v}: {k}" for k, v in list(offenders.items())[:5])


def test_the_rule_finds_a_statement_that_does_not_name_its_tenant():
    assert unscoped("SELECT licenses.user_id FROM licenses WHERE licenses.plan_id = %(p)s") == ["licenses"]
    joined = (
        "SELECT users.id FROM licenses JOIN users ON users.id = licenses.user_id "
        "WHERE licenses.tenant_id = %(t)s"
    )
    assert unscoped(joined) == ["users"]
    aliased = "SELECT g.id FROM groups AS g WHERE g.tenant_id = %(t)s"
    assert unscoped(aliased) == []
    assert unscoped("SELECT plans.id FROM plans WHERE plans.product_id = %(p)s") == []  # not tenant-owned
