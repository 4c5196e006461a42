"""A nested group of N users, written fast, for the crash-recovery test.

The directory is written with the benchmark's bulk writer (bench/data.py: COPY on PostgreSQL, executemany
on SQLite) in P3's layout: `All Staff` holds 10 departments of 5 teams each, the users are spread over the
50 teams and one in ten is also in a second team, so a fan-out walks three levels of nesting and counts
each user once. Users are plain (`user000042@contoso.com`, no search terms, no provisioning audit events:
nothing the fan-out reads), which keeps 100,000 of them at a few seconds. Ids are deterministic UUID-shaped
strings whose first hex digit is the caller's, so two tenants built alike compare row by row by UPN.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from bench import data
from licensedesk.db import schema
from licensedesk.db.engine import Database

DEPARTMENTS = 10
TEAMS_PER_DEPARTMENT = 5
TOP_GROUP = "All Staff"


@dataclass
class Directory:
    tenant_id: str
    top_group: str
    size: int


def user_id(digit: str, i: int) -> str:
    return f"{digit}{i:07d}-0000-4000-8000-000000000000"


def upn(i: int) -> str:
    return f"user{i:06d}@{data.DOMAIN}"


def build(db: Database, tenant_id: str, size: int, *, digit: str) -> Directory:
    """Write `size` users nested three levels deep under `All Staff` into the (existing) tenant."""
    rng = random.Random(f"reliability-{digit}")
    teams = DEPARTMENTS * TEAMS_PER_DEPARTMENT
    names = (
        [TOP_GROUP]
        + [f"{d} Department" for d in data.DEPARTMENTS[:DEPARTMENTS]]
        + [
            f"{data.DEPARTMENTS[t // TEAMS_PER_DEPARTMENT]} Team {t % TEAMS_PER_DEPARTMENT + 1}"
            for t in range(teams)
        ]
    )
    at = data.PROVISIONED_AT
    with data.bulk_writer(db) as writer:
        users = data.Users()
        for chunk in range(0, size, data.CHUNK):
            rows = []
            for i in range(chunk, min(size, chunk + data.CHUNK)):
                uid, name = user_id(digit, i), upn(i)
                rows.append((tenant_id, uid, name, name, f"User {i}", None, True, at, at, at))
                users.ids.append(uid)
                users.upns.append(name)
            writer.insert(schema.users, data.USER_COLUMNS, rows)
            writer.commit()
        groups = data.add_groups(writer, tenant_id, names, rng=rng, audit=False)
        edges = [(0, 1 + d) for d in range(DEPARTMENTS)] + [
            (1 + t // TEAMS_PER_DEPARTMENT, 1 + DEPARTMENTS + t) for t in range(teams)
        ]
        data.nest_groups(writer, tenant_id, edges, groups, rng=rng, audit=False)

        def memberships() -> Iterator[tuple[int, int]]:
            for u in range(size):
                yield 1 + DEPARTMENTS + u % teams, u
                if u % 10 == 0:  # also in a second team: counted once
                    yield 1 + DEPARTMENTS + (u + 7) % teams, u

        total = size + (size + 9) // 10
        data.add_user_members(writer, tenant_id, memberships(), total, users, groups, rng=rng, audit=False)
    return Directory(tenant_id, groups.ids[0], size)


def analyze(db: Database) -> None:
    """Planner statistics after the bulk load, as autovacuum would soon gather them (PostgreSQL only;
    see bench/results.md: without them the recomputation is planned as a nested loop over every member)."""
    if db.is_sqlite:
        return
    with db.engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in (schema.users, schema.group_user_members, schema.group_closure, schema.groups):
            conn.exec_driver_sql(f"ANALYZE {table.name}")
