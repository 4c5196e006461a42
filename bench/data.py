"""A fast generator of benchmark data.

The directory (users, groups, nesting, memberships, their search terms and audit events) is written
straight to the tables in large batches (executemany on SQLite, COPY on PostgreSQL) instead of one
service call per object, but row for row it is what the directory service writes: `upn_key` is the
lower-cased userPrincipalName, the search terms come from `directory.repository.search_terms`, every
group has its closure self row (joined 1970-01-01), nesting has a closure row for every ancestor /
descendant pair, and every object gets the audit event the service would record. The small things
(tenant, catalog, subscriptions, assignments) go through the services.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Table, create_engine, text

from licensedesk.catalog import service as catalog
from licensedesk.context import Context
from licensedesk.db import schema
from licensedesk.db.engine import Database, normalize_url
from licensedesk.db.migrate import upgrade
from licensedesk.directory.repository import search_terms

# Bump when the generated data changes shape, so cached databases are rebuilt.
GENERATOR_VERSION = "1"
# The directory is provisioned well before any assignment the benchmarks make.
PROVISIONED_AT = datetime(2025, 6, 1, 9, 0, 0)
EPOCH = datetime(1970, 1, 1)
DOMAIN = "contoso.com"
CHUNK = 50_000
SYSTEM_ACTOR = ("system", None, "licensedesk")  # licensedesk.context.SYSTEM

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"

PRODUCT = "innofalls-charts"
PLANS = {
    "innofalls-charts-pro": ("Pro", "innofalls.charts.pro"),
    "innofalls-charts-basic": ("Basic", "innofalls.charts.basic"),
    "innofalls-charts-enterprise": ("Enterprise", "innofalls.charts.enterprise"),
}

# ---------------------------------------------------------------- names


def _words(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = _words(
    "Aaron Abigail Adam Adrian Agnes Ahmed Aisha Alan Albert Alejandro Alex Alexander Alice Amelia Amir "
    "Ana Andrea Andrew Angela Anna Anne Anton Arjun Astrid Ava Barbara Beatriz Ben Benjamin Bernard "
    "Bianca Brian Bruno Camila Carl Carla Carlos Caroline Catherine Charles Charlotte Chen Chloe "
    "Christian Christine Claire Claudia Colin Daniel David Deborah Diana Diego Dmitri Dorothy Edward "
    "Elena Elias Elizabeth Ella Emil Emily Emma Eric Erik Eva Fatima Felix Fernando Fiona Francesca Frank "
    "Gabriel George Grace Hannah Hans Harry Helen Henry Hiroshi Ian Ines Irene Isaac Isabel Ivan Jack "
    "Jacob James Jan Jane Javier Jennifer Jessica Joanna Johan John Jonas Jose Joseph Julia Julian Karen "
    "Karim Katarina Kenji Kevin Laura Lea Leo Li Lina Linda Lisa Lucas Lucia Luis Maja Marco Maria Mark "
    "Marta Martin Mary Mateo Matthew Mei Mia Michael Michelle Mohammed Nadia Natalie Nathan Nicole Nils "
    "Noah Nora Oliver Olivia Omar Oscar Patricia Paul Pedro Peter Priya Rachel Rafael Rahul Raj Rebecca "
    "Richard Robert Rosa Ruth Ryan Samuel Sandra Sara Sebastian Sofia Sophie Stefan Stephen Susan Thomas "
    "Tim Tom Valentina Victor Victoria Wei William Yuki Zoe"
)

LAST_NAMES = _words(
    "Adams Ahmed Ali Allen Andersen Anderson Bailey Baker Becker Bell Bennett Brown Campbell Carter Chen "
    "Clark Collins Cook Cooper Costa Cruz Davies Davis Diaz Dubois Edwards Evans Fischer Fernandez "
    "Fontaine Garcia Gomez Gonzalez Green Hall Hansen Harris Hernandez Hill Hoffmann Hughes Jackson "
    "Jensen Johansson Johnson Jones Kaur Khan Kim King Klein Koch Kowalski Kumar Larsen Lee Lewis Li "
    "Lopez Martin Martinez Meyer Miller Moore Morgan Morris Muller Murphy Nguyen Nielsen Novak Olsen Park "
    "Patel Perez Peters Petrov Phillips Ramirez Reed Richter Rivera Roberts Robinson Rodriguez Rossi "
    "Russo Sanchez Santos Schmidt Schneider Schulz Scott Silva Singh Smith Sousa Stewart Suzuki Tanaka "
    "Taylor Thomas Thompson Torres Turner Walker Wang Watson Weber White Williams Wilson Wong Wood Wright "
    "Yamamoto Young Zhang Zimmermann"
)

_SYLLABLES = _words(
    "ba be bi bo bra bri da de di do dra fa fe fi fo ga ge gi go ha he ka ke ki ko la le li lo ma me mi "
    "mo na ne ni no pa pe pi po ra re ri ro sa se si so sta ste ta te ti to va ve vi vo wa we za ze"
)
_ENDINGS = ("", "n", "r", "s", "l", "t", "nd", "rt", "ck", "sson", "man", "berg", "ford", "ley", "ski", "ez")

DEPARTMENTS = _words(
    "Finance Sales Marketing Engineering Research Legal Operations Support Procurement Logistics Design "
    "Product Security Facilities Training"
)
REGIONS = _words("EMEA Americas APAC Nordics DACH Iberia Benelux UK")
GROUP_KINDS = _words("Team Project Squad Guild Committee Office Program Unit")


def synthetic_last_names(rng: random.Random, n: int) -> list[str]:
    """Plausible surnames beyond the common ones, for a long tail like a real directory's."""
    names: set[str] = set()
    while len(names) < n:
        parts = [rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3)))]
        names.add(("".join(parts) + rng.choice(_ENDINGS)).capitalize())
    return sorted(names)


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# ---------------------------------------------------------------- bulk writing


def progress_bar(console: Any = None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class BulkWriter:
    """Writes rows of the schema's tables in large batches on one raw connection: executemany in one
    transaction on SQLite, COPY on PostgreSQL. Values pass through the column types' bind processors
    (SQLite), so they are stored exactly as SQLAlchemy stores them for the services."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.dialect = db.engine.dialect
        self.raw = db.engine.raw_connection()
        self.driver: Any = self.raw.driver_connection
        self.sqlite = db.is_sqlite
        self._open = False
        if self.sqlite:
            cur = self.driver.cursor()
            # 1 GiB of cache: index inserts of millions of rows stay in memory
            cur.execute("PRAGMA cache_size=-1048576")
            cur.execute("PRAGMA synchronous=OFF")  # a crashed generation is simply regenerated
            cur.close()

    def insert(self, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        _check_columns(table, columns)
        cols = ", ".join(columns)
        if self.sqlite:
            if not self._open:
                self.driver.execute("BEGIN")
                self._open = True
            procs = [table.c[c].type.dialect_impl(self.dialect).bind_processor(self.dialect) for c in columns]
            if any(procs):
                rows = [
                    tuple(v if p is None or v is None else p(v) for p, v in zip(procs, row, strict=True))
                    for row in rows
                ]
            marks = ", ".join("?" for _ in columns)
            self.driver.executemany(f"INSERT INTO {table.name} ({cols}) VALUES ({marks})", rows)
        else:
            with self.driver.cursor() as cur, cur.copy(f"COPY {table.name} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def commit(self) -> None:
        if self.sqlite:
            if self._open:
                self.driver.execute("COMMIT")
                self._open = False
        else:
            self.driver.commit()

    def close(self) -> None:
        self.commit()
        self.raw.close()


def _check_columns(table: Table, columns: Sequence[str]) -> None:
    """Fail loudly when the schema grew a required column the generator does not fill."""
    missing = [
        c.name
        for c in table.columns
        if not c.nullable and c.server_default is None and c.default is None and c.name not in columns
    ]
    unknown = [c for c in columns if c not in table.c]
    if missing or unknown:
        raise RuntimeError(
            f"bench/data.py is out of date with the schema of {table.name}: "
            f"missing {missing}, unknown {unknown}; update the generator and GENERATOR_VERSION"
        )


@contextmanager
def bulk_writer(db: Database) -> Iterator[BulkWriter]:
    writer = BulkWriter(db)
    try:
        yield writer
    finally:
        writer.close()


def _chunks(n: int, size: int = CHUNK) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def _audit_row(
    tenant_id: str, rng: random.Random, action: str, target: tuple[str, str, str], details: dict[str, Any]
) -> tuple[Any, ...]:
    return (
        tenant_id,
        new_id(rng),
        PROVISIONED_AT,
        *SYSTEM_ACTOR,
        action,
        *target,
        None,
        json.dumps(details, separators=(",", ":"), default=str),
        None,
    )


AUDIT_COLUMNS = (
    "tenant_id",
    "id",
    "at",
    "actor_type",
    "actor_id",
    "actor_name",
    "action",
    "target_type",
    "target_id",
    "target_name",
    "plan_id",
    "details",
    "request_id",
)
USER_COLUMNS = (
    "tenant_id",
    "id",
    "user_principal_name",
    "upn_key",
    "display_name",
    "external_id",
    "active",
    "activated_at",
    "created_at",
    "updated_at",
)
GROUP_COLUMNS = (
    "tenant_id",
    "id",
    "display_name",
    "name_key",
    "description",
    "external_id",
    "created_at",
    "updated_at",
)
TERM_COLUMNS = tuple(c.name for c in schema.directory_terms.columns)


def _term_rows(tenant_id: str, kind: str, object_id: str, terms: Any) -> list[tuple[Any, ...]]:
    """The rows directory.repository.replace_terms writes for these terms (a {term: rank} mapping, or a
    set of terms where the table has no rank)."""
    ranked = terms.items() if isinstance(terms, dict) else ((t, None) for t in terms)
    out = []
    for term, rank in sorted(ranked):
        values = {"tenant_id": tenant_id, "term": term, "rank": rank, "kind": kind, "object_id": object_id}
        out.append(tuple(values[c] for c in TERM_COLUMNS))
    return out


CLOSURE_COLUMNS = ("tenant_id", "ancestor_id", "descendant_id", "joined_at")


# ---------------------------------------------------------------- the directory


@dataclass
class Users:
    ids: list[str] = field(default_factory=list)
    upns: list[str] = field(default_factory=list)
    names: list[tuple[str, str]] = field(default_factory=list)  # (first, last) for realistic search prefixes


def add_users(
    writer: BulkWriter,
    tenant_id: str,
    n: int,
    *,
    rng: random.Random,
    progress: Progress | None = None,
    inactive_every: int = 0,
    audit: bool = True,
) -> Users:
    """n users with realistic names: `first.last[k]@contoso.com`, display name `First Last`, each with
    their search terms and a `user.created` event. Every `inactive_every`-th user is inactive."""
    tail = synthetic_last_names(rng, 3000)
    seen: dict[str, int] = {}
    out = Users()
    task = progress.add_task("users + search terms", total=n) if progress else None
    for chunk in _chunks(n):
        user_rows, term_rows, audit_rows = [], [], []
        for i in chunk:
            first = rng.choice(FIRST_NAMES)
            last = rng.choice(LAST_NAMES) if rng.random() < 0.5 else rng.choice(tail)
            base = f"{first}.{last}".lower()
            k = seen.get(base, 0) + 1
            seen[base] = k
            upn = f"{first}.{last}{'' if k == 1 else k}@{DOMAIN}"
            display = f"{first} {last}"
            uid = new_id(rng)
            active = not (inactive_every and i % inactive_every == inactive_every - 1)
            external_id = new_id(rng)
            user_rows.append(
                (
                    tenant_id,
                    uid,
                    upn,
                    upn.lower(),
                    display,
                    external_id,
                    active,
                    PROVISIONED_AT,
                    PROVISIONED_AT,
                    PROVISIONED_AT,
                )
            )
            term_rows.extend(_term_rows(tenant_id, "user", uid, search_terms(upn, display)))
            if audit:
                details = {"displayName": display, "externalId": external_id, "active": active}
                audit_rows.append(_audit_row(tenant_id, rng, "user.created", ("user", uid, upn), details))
            out.ids.append(uid)
            out.upns.append(upn)
            out.names.append((first, last))
        writer.insert(schema.users, USER_COLUMNS, user_rows)
        writer.insert(schema.directory_terms, TERM_COLUMNS, term_rows)
        writer.insert(schema.audit_events, AUDIT_COLUMNS, audit_rows)
        writer.commit()
        if progress is not None and task is not None:
            progress.advance(task, len(chunk))
    return out


@dataclass
class Groups:
    ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


def add_groups(
    writer: BulkWriter,
    tenant_id: str,
    names: Sequence[str],
    *,
    rng: random.Random,
    progress: Progress | None = None,
    audit: bool = True,
) -> Groups:
    """Groups with these display names, each with its closure self row, search terms and audit event."""
    out = Groups()
    task = progress.add_task("groups + closure self rows", total=len(names)) if progress else None
    for chunk in _chunks(len(names)):
        group_rows, closure_rows, term_rows, audit_rows = [], [], [], []
        for i in chunk:
            name = names[i]
            gid = new_id(rng)
            external_id = new_id(rng)
            group_rows.append(
                (tenant_id, gid, name, name.lower()[:400], "", external_id, PROVISIONED_AT, PROVISIONED_AT)
            )
            closure_rows.append((tenant_id, gid, gid, EPOCH))
            term_rows.extend(_term_rows(tenant_id, "group", gid, search_terms(name)))
            if audit:
                audit_rows.append(
                    _audit_row(
                        tenant_id,
                        rng,
                        "group.created",
                        ("group", gid, name),
                        {"description": "", "externalId": external_id},
                    )
                )
            out.ids.append(gid)
            out.names.append(name)
        writer.insert(schema.groups, GROUP_COLUMNS, group_rows)
        writer.insert(schema.group_closure, CLOSURE_COLUMNS, closure_rows)
        writer.insert(schema.directory_terms, TERM_COLUMNS, term_rows)
        writer.insert(schema.audit_events, AUDIT_COLUMNS, audit_rows)
        writer.commit()
        if progress is not None and task is not None:
            progress.advance(task, len(chunk))
    return out


def nest_groups(
    writer: BulkWriter,
    tenant_id: str,
    edges: Sequence[tuple[int, int]],
    groups: Groups,
    *,
    rng: random.Random,
    progress: Progress | None = None,
    audit: bool = True,
) -> None:
    """Nest groups as a forest: edges are (parent, child) indexes into `groups`, among groups not nested
    before. Writes group_group_members and a closure row for every (ancestor, descendant) pair, joined at
    the latest edge on the path (the only path, in a forest)."""
    parent_of: dict[int, int] = {}
    for parent, child in edges:
        if child in parent_of:
            raise ValueError(f"group {child} would have two parents: nest_groups builds a forest")
        parent_of[child] = parent
    task = progress.add_task("nesting + closure", total=len(edges)) if progress else None
    edge_rows, closure_rows, audit_rows = [], [], []
    for n, (parent, child) in enumerate(edges, 1):
        edge_rows.append((tenant_id, groups.ids[parent], groups.ids[child], PROVISIONED_AT))
        # child and each of its descendants become reachable from parent and each of its ancestors; the
        # pairs are written once, when walking up from every descendant: here, child's own upward chain
        anc = parent
        seen = {child}
        while True:
            if anc in seen:
                raise ValueError("nesting edges make a cycle")
            seen.add(anc)
            closure_rows.append((tenant_id, groups.ids[anc], groups.ids[child], PROVISIONED_AT))
            if anc not in parent_of:
                break
            anc = parent_of[anc]
        if audit:
            audit_rows.append(
                _audit_row(
                    tenant_id,
                    rng,
                    "group.member_added",
                    ("group", groups.ids[parent], groups.names[parent]),
                    {
                        "memberType": "group",
                        "memberId": groups.ids[child],
                        "displayName": groups.names[child],
                    },
                )
            )
        if len(closure_rows) >= CHUNK or n == len(edges):
            writer.insert(
                schema.group_group_members,
                ("tenant_id", "group_id", "member_group_id", "added_at"),
                edge_rows,
            )
            writer.insert(schema.group_closure, CLOSURE_COLUMNS, closure_rows)
            writer.insert(schema.audit_events, AUDIT_COLUMNS, audit_rows)
            writer.commit()
            if progress is not None and task is not None:
                progress.advance(task, len(edge_rows))
            edge_rows, closure_rows, audit_rows = [], [], []


def add_user_members(
    writer: BulkWriter,
    tenant_id: str,
    memberships: Iterable[tuple[int, int]],
    total: int,
    users: Users,
    groups: Groups,
    *,
    rng: random.Random,
    progress: Progress | None = None,
    audit: bool = True,
) -> None:
    """Direct user members: memberships are distinct (group index, user index) pairs."""
    task = progress.add_task("group memberships", total=total) if progress else None
    rows, audit_rows = [], []
    written = 0

    def flush() -> None:
        nonlocal rows, audit_rows, written
        writer.insert(schema.group_user_members, ("tenant_id", "group_id", "user_id", "added_at"), rows)
        writer.insert(schema.audit_events, AUDIT_COLUMNS, audit_rows)
        writer.commit()
        written += len(rows)
        if progress is not None and task is not None:
            progress.advance(task, len(rows))
        rows, audit_rows = [], []

    for g, u in memberships:
        rows.append((tenant_id, groups.ids[g], users.ids[u], PROVISIONED_AT))
        if audit:
            audit_rows.append(
                _audit_row(
                    tenant_id,
                    rng,
                    "group.member_added",
                    ("group", groups.ids[g], groups.names[g]),
                    {"memberType": "user", "memberId": users.ids[u], "userPrincipalName": users.upns[u]},
                )
            )
        if len(rows) >= CHUNK:
            flush()
    flush()
    if written != total:
        raise RuntimeError(f"wrote {written} memberships, expected {total}")


def group_names(rng: random.Random, n: int) -> list[str]:
    """Realistic, unique group names: `Finance EMEA Team 00042`."""
    return [
        f"{rng.choice(DEPARTMENTS)} {rng.choice(REGIONS)} {rng.choice(GROUP_KINDS)} {i:05d}" for i in range(n)
    ]


def finish(db: Database) -> None:
    """After a bulk load: PostgreSQL gets its statistics (autovacuum would gather them soon after such a
    load in production); SQLite is left as the application leaves it (it runs no ANALYZE), with the WAL
    folded into the database file."""
    with db.engine.connect() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("VACUUM ANALYZE")


# ---------------------------------------------------------------- the small things, through the services


def ensure_catalog(ctx: Context, plans: Iterable[str] = PLANS) -> None:
    if not any(p.id == PRODUCT for p in catalog.list_products(ctx)):
        catalog.create_product(ctx, PRODUCT, "Innofalls Charts", "api://innofalls-charts")
    existing = {p.id for p in catalog.list_plans(ctx, PRODUCT)}
    for plan_id in plans:
        if plan_id in existing:
            continue
        name, sp = PLANS.get(plan_id, (plan_id, plan_id.replace("-", ".")))
        catalog.create_plan(ctx, PRODUCT, plan_id, name, sp)


# ---------------------------------------------------------------- databases


def data_key(*parts: object) -> str:
    """A short hash of the generator version and the caller's parameters: what the cached data is."""
    blob = "\n".join([GENERATOR_VERSION, *map(str, parts)])
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def schema_matches(db: Database) -> bool:
    """Bring a cached database to the migration head and tell whether its schema is then exactly the
    code's (as the migration drift test checks): only then is its data what the generator would write."""
    upgrade(db)
    with db.engine.connect() as conn:
        return not compare_metadata(MigrationContext.configure(conn), schema.metadata)


def postgres_url() -> str | None:
    return os.environ.get("LICENSEDESK_BENCH_POSTGRES_URL") or os.environ.get("LICENSEDESK_TEST_POSTGRES_URL")


def _server_url(url: str, name: str) -> str:
    return f"{normalize_url(url).rsplit('/', 1)[0]}/{name}"


def _admin(url: str) -> Any:
    return create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")


@contextmanager
def throwaway_database(backend: str, label: str) -> Iterator[str]:
    """A new, migrated, empty database of the backend, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix=f"licensedesk-bench-{label}-", dir=_tmp_dir()) as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            db = Database(url)
            upgrade(db)
            db.dispose()
            yield url
        return
    base = postgres_url()
    if not base:
        raise RuntimeError("no PostgreSQL: set LICENSEDESK_BENCH_POSTGRES_URL")
    name = f"licensedesk_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = _admin(base)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = _server_url(base, name)
        db = Database(url)
        upgrade(db)
        db.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _tmp_dir() -> str:
    path = DATA_DIR / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


PERSISTENT_PG_DATABASE = "licensedesk_bench_p4"


def cached_database(backend: str, name: str, key: str) -> tuple[str, bool]:
    """The URL of a cached benchmark database and whether it is ready: built by this generator for `key`
    and, once migrated to the head, of exactly the code's schema. On SQLite a file
    bench/data/{name}-{key}.db; on PostgreSQL the database licensedesk_bench_p4, kept between runs,
    whose COMMENT holds the key. One that is not ready is (re)created empty and migrated."""
    if backend == "sqlite":
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path = DATA_DIR / f"{name}-{key}.db"
        url = f"sqlite:///{path}"
        if path.exists() and (DATA_DIR / f"{name}-{key}.ready").exists() and _usable(url):
            return url, True
        for stale in DATA_DIR.glob(f"{name}-*"):
            stale.unlink()
    else:
        base = postgres_url()
        if not base:
            raise RuntimeError("no PostgreSQL: set LICENSEDESK_BENCH_POSTGRES_URL")
        dbname = PERSISTENT_PG_DATABASE
        url = _server_url(base, dbname)
        admin = _admin(base)
        with admin.connect() as conn:
            comment = conn.execute(
                text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"),
                {"n": dbname},
            ).first()
        if comment is not None and comment[0] == f"ready {key}" and _usable(url):
            admin.dispose()
            return url, True
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{dbname}"'))
        admin.dispose()
    db = Database(url)
    upgrade(db)
    db.dispose()
    return url, False


def _usable(url: str) -> bool:
    db = Database(url)
    try:
        return schema_matches(db)
    except Exception:  # a half-built or foreign database: rebuild it
        return False
    finally:
        db.dispose()


def mark_ready(backend: str, url: str, name: str, key: str) -> None:
    if backend == "sqlite":
        (DATA_DIR / f"{name}-{key}.ready").write_text(datetime.now().isoformat())
        return
    admin = _admin(postgres_url() or url)
    with admin.connect() as conn:
        conn.execute(text(f"COMMENT ON DATABASE \"{PERSISTENT_PG_DATABASE}\" IS 'ready {key}'"))
    admin.dispose()
