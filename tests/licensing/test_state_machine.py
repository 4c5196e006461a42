"""A stateful model check of the licensing engine against a from-scratch recomputation (SPEC section 1).

A Hypothesis state machine applies random operations through the public service functions (assign,
unassign, reassign, memberships and nesting, (de)activation, user deletion, subscriptions, the clock and
the lifecycle timers) to a small world: one tenant, the Pro and Basic plans, ~8 users and ~4 groups.
After every step the worker is drained and the state the engine *maintains* (licenses, pool counters,
group license status, the nesting closure) is compared with what this file recomputes in plain Python
from the raw facts (users, assignments, memberships, subscriptions), independently of the engine's SQL.

Refused operations (the 409s of SPEC section 1) are predicted by the model, and must change nothing: a
snapshot of every tenant-owned table is compared before and after.

The claim time follows SPEC section 1 — the grant time of the oldest current source; a group source via
an assigned group G is granted at max(assignment time, the time the user joined G through its nesting)
— with the project's reading of "reactivation restores the license *when a seat is free*": a claim never
counts from before the user was last (re)activated (users.activated_at; creation counts as activation).
See test_seating_rules.py::test_a_deactivated_user_is_disabled_and_frees_the_seat_for_the_longest_waiting.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select

from licensedesk.billing import service as billing
from licensedesk.context import Context
from licensedesk.db import schema
from licensedesk.db.schema import job_users, jobs, seat_reservations
from licensedesk.directory import service as directory
from licensedesk.errors import (
    AlreadyAssigned,
    Conflict,
    GroupHasLicenses,
    LicenseInherited,
    MembershipCycle,
    NotAssigned,
    NotEnoughLicenses,
    NotFound,
    QuantityBelowAssigned,
    SubscriptionTerminal,
    ValidationFailed,
)
from licensedesk.licensing import processing, seating
from licensedesk.licensing import service as licensing
from licensedesk.licensing.seating import SEATED, Holder
from tests.world import PLAN, World, make_world

BASIC = "innofalls-charts-basic"
PLANS = (PLAN, BASIC)
EPOCH = datetime(1970, 1, 1)
N_USERS = 8
N_GROUPS = 4
SEAT_EVENTS = (
    "license.granted",
    "license.revoked",
    "license.seat_lost",
    "license.seated",
    "license.state_changed",
)

# Shrinking replays steps against a database and runs into Hypothesis' five-minute cap, so it is off unless
# asked for (LICENSEDESK_SM_SHRINK=1); every bug the machine found has its own minimal test at the end.
SHRINK = os.environ.get("LICENSEDESK_SM_SHRINK") == "1"
PHASES = tuple(Phase) if SHRINK else (Phase.explicit, Phase.reuse, Phase.generate)

_slugs = itertools.count()

# ---------------------------------------------------------------------------------------------------------
# The model: raw facts read with plain SELECTs, and everything derived from them recomputed in Python.


@dataclass
class Facts:
    """The source of truth of one tenant: nothing in here is maintained by the engine."""

    users: dict[str, tuple[bool, datetime]]  # id -> (active, activated_at)
    groups: set[str]
    user_members: dict[tuple[str, str], datetime]  # (group, user) -> added_at
    group_edges: dict[tuple[str, str], datetime]  # (parent, member group) -> added_at
    direct: dict[tuple[str, str], datetime]  # (plan, user) -> assigned_at
    direct_keys: dict[tuple[str, str], str]  # (plan, user) -> claim key carried by a reassignment
    group_assignments: dict[tuple[str, str], datetime]  # (plan, group) -> assigned_at
    subscriptions: dict[str, tuple[str, str, int]]  # id -> (plan, status, quantity)
    reservations: list[tuple[str, datetime, int]]  # (plan, accepted_at, seats)


def read_facts(ctx: Context, tenant: str) -> Facts:
    s = schema
    with ctx.db.read() as conn:

        def rows(table: Any, *cols: Any) -> list[Any]:
            return list(conn.execute(select(*cols).where(table.c.tenant_id == tenant)))

        u, m, e, d, g, sub, r = (
            s.users,
            s.group_user_members,
            s.group_group_members,
            s.direct_assignments,
            s.group_assignments,
            s.subscriptions,
            s.seat_reservations,
        )
        return Facts(
            users={i: (bool(a), at) for i, a, at in rows(u, u.c.id, u.c.active, u.c.activated_at)},
            groups={i for (i,) in rows(s.groups, s.groups.c.id)},
            user_members={
                (gid, uid): at for gid, uid, at in rows(m, m.c.group_id, m.c.user_id, m.c.added_at)
            },
            group_edges={(p, c): at for p, c, at in rows(e, e.c.group_id, e.c.member_group_id, e.c.added_at)},
            direct={(p, uid): at for p, uid, at in rows(d, d.c.plan_id, d.c.user_id, d.c.assigned_at)},
            direct_keys={
                (p, uid): key
                for p, uid, key in rows(d, d.c.plan_id, d.c.user_id, d.c.claim_key)
                if key is not None
            },
            group_assignments={
                (p, gid): at for p, gid, at in rows(g, g.c.plan_id, g.c.group_id, g.c.assigned_at)
            },
            subscriptions={
                i: (p, st_, q)
                for i, p, st_, q in rows(sub, sub.c.id, sub.c.plan_id, sub.c.status, sub.c.quantity)
            },
            reservations=[(p, at, n) for p, at, n in rows(r, r.c.plan_id, r.c.accepted_at, r.c.seats)],
        )


def reachability(
    groups: Iterable[str], edges: dict[tuple[str, str], datetime]
) -> dict[tuple[str, str], datetime]:
    """(ancestor, descendant) -> when the descendant became reachable: the minimum over nesting paths of the
    latest edge on the path; every group reaches itself since the epoch. (Bellman-Ford on (min, max).)"""
    reach = {(g, g): EPOCH for g in groups}
    changed = True
    while changed:
        changed = False
        for (parent, child), added in edges.items():
            for (anc, desc), joined in list(reach.items()):
                if desc != parent:
                    continue
                candidate = max(joined, added)
                if (anc, child) not in reach or candidate < reach[(anc, child)]:
                    reach[(anc, child)] = candidate
                    changed = True
    return reach


def joined_groups(facts: Facts, reach: dict[tuple[str, str], datetime]) -> dict[tuple[str, str], datetime]:
    """(user, group) -> J: the minimum over membership paths user -> H -> ... -> group of the latest
    membership time on the path (the user's own membership of H included)."""
    out: dict[tuple[str, str], datetime] = {}
    for (h, user), added in facts.user_members.items():
        for (anc, desc), joined in reach.items():
            if desc == h:
                j = max(added, joined)
                if (user, anc) not in out or j < out[(user, anc)]:
                    out[(user, anc)] = j
    return out


@dataclass(frozen=True)
class License:
    claim_at: datetime
    direct: bool
    via_group: bool
    state: str


@dataclass
class Model:
    facts: Facts
    reach: dict[tuple[str, str], datetime]
    joined: dict[tuple[str, str], datetime]
    licenses: dict[tuple[str, str], License]  # (plan, user) -> license
    units: dict[str, seating.Units]

    def state(self, plan: str, user: str) -> str | None:
        lic = self.licenses.get((plan, user))
        return lic.state if lic else None

    def transitive_users(self, group: str) -> set[str]:
        return {u for (u, g) in self.joined if g == group}

    def group_sources(self, plan: str, user: str) -> list[str]:
        return [g for (p, g) in self.facts.group_assignments if p == plan and (user, g) in self.joined]

    def assigned(self, plan: str) -> int:
        return sum(1 for (p, _u), lic in self.licenses.items() if p == plan and lic.state in SEATED)

    def available(self, plan: str) -> int:
        reserved = sum(n for p, _at, n in self.facts.reservations if p == plan)
        return seating.available(self.units[plan], self.assigned(plan), reserved)

    def needed(self, plan: str, users: Iterable[str], groups: Iterable[str]) -> int:
        """SPEC: distinct users named or reached through the groups who do not already hold a seat (the
        engine, like its tests, leaves out inactive users: they would not take a seat)."""
        targets = set(users)
        for g in groups:
            targets |= self.transitive_users(g)
        return sum(1 for u in targets if self.facts.users[u][0] and self.state(plan, u) not in SEATED)


def recompute(facts: Facts) -> Model:
    """Every derived fact, from scratch."""
    reach = reachability(facts.groups, facts.group_edges)
    joined = joined_groups(facts, reach)
    licenses: dict[tuple[str, str], License] = {}
    units: dict[str, seating.Units] = {}
    for plan in PLANS:
        grants: dict[str, list[datetime]] = {}
        direct: set[str] = set()
        via_group: set[str] = set()
        for (p, user), at in facts.direct.items():
            if p == plan:
                grants.setdefault(user, []).append(at)
                direct.add(user)
        for (p, group), assigned_at in facts.group_assignments.items():
            if p != plan:
                continue
            for (user, g), j in joined.items():
                if g == group:
                    grants.setdefault(user, []).append(max(assigned_at, j))
                    via_group.add(user)
        holders = []
        for user, times in grants.items():
            active, activated_at = facts.users[user]
            # equal claim times are ordered by the key a reassignment carried (`to` takes `from`'s place),
            # else by user id
            key = facts.direct_keys.get((plan, user))
            holders.append(Holder(user, max(min(times), activated_at), active, key))
        units[plan] = seating.pool_units((st_, q) for p, st_, q in facts.subscriptions.values() if p == plan)
        reservations = [(at, n) for p, at, n in facts.reservations if p == plan]
        states = seating.seat(holders, units[plan], reservations)
        for h in holders:
            licenses[(plan, h.user_id)] = License(
                h.claim_at, h.user_id in direct, h.user_id in via_group, states[h.user_id]
            )
    return Model(facts, reach, joined, licenses, units)


# ---------------------------------------------------------------------------------------------------------
# What the engine maintains, and snapshots for "a refusal changes nothing".

SNAPSHOT_TABLES = (
    "users",
    "groups",
    "group_user_members",
    "group_group_members",
    "group_closure",
    "directory_terms",
    "subscriptions",
    "direct_assignments",
    "group_assignments",
    "licenses",
    "pools",
    "seat_reservations",
    "jobs",
    "job_users",
    "audit_events",
    "work_scope",
    "work_desired",
    "work_seat_changes",
)


def snapshot(ctx: Context, tenant: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    with ctx.db.read() as conn:
        for name in SNAPSHOT_TABLES:
            table = schema.metadata.tables[name]
            rows = conn.execute(select(table).where(table.c.tenant_id == tenant)).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
    return out


def check_engine_against_model(ctx: Context, tenant: str, model: Model) -> None:
    """Compare every maintained fact of the tenant with the model (the queue must be empty)."""
    s = schema
    facts = model.facts
    with ctx.db.read() as conn:

        def rows(table: Any, *cols: Any) -> list[Any]:
            return list(conn.execute(select(*cols).where(table.c.tenant_id == tenant)))

        for name in (
            "jobs",
            "job_users",
            "seat_reservations",
            "work_scope",
            "work_desired",
            "work_seat_changes",
        ):
            table = s.metadata.tables[name]
            assert rows(table, table.c.tenant_id) == [], f"{name} should be empty after draining"

        # the nesting closure, with joined_at = min over paths of the latest edge
        c = s.group_closure
        closure = {(a, d): at for a, d, at in rows(c, c.c.ancestor_id, c.c.descendant_id, c.c.joined_at)}
        assert closure == model.reach, "group_closure differs from the reachability of group_group_members"

        # licenses
        lic = s.licenses
        got = {
            (p, u): License(at, bool(dr), bool(vg), state)
            for p, u, at, dr, vg, state, active in rows(
                lic,
                lic.c.plan_id,
                lic.c.user_id,
                lic.c.claim_at,
                lic.c.direct,
                lic.c.via_group,
                lic.c.state,
                lic.c.active,
            )
        }
        diff = {
            k: (got.get(k), model.licenses.get(k))
            for k in set(got) | set(model.licenses)
            if got.get(k) != model.licenses.get(k)
        }
        assert not diff, f"licenses (engine, model) differ: {diff}"
        for p, u, active in rows(lic, lic.c.plan_id, lic.c.user_id, lic.c.active):
            assert bool(active) == facts.users[u][0], f"licenses.active of {u} ({p}) is not the user's flag"

        # pools and their counters
        pl = s.pools
        pools = {r.plan_id: r for r in rows(pl, pl)}
        for plan in PLANS:
            counts = seating.count(x.state for (p, _u), x in model.licenses.items() if p == plan)
            units = model.units[plan]
            has_subs = any(p == plan for p, _s, _q in facts.subscriptions.values())
            pool = pools.get(plan)
            if pool is None:
                assert counts == seating.Counts() and not has_subs, f"{plan}: no pool row but licenses/subs"
                continue
            got_pool = (
                pool.enabled,
                pool.warning,
                pool.suspended,
                pool.seated_active,
                pool.seated_warning,
                pool.seated_suspended,
                pool.waiting,
                pool.disabled,
                pool.reserved,
                bool(pool.has_subscriptions),
            )
            want_pool = (
                units.enabled,
                units.warning,
                units.suspended,
                counts.active,
                counts.warning,
                counts.suspended,
                counts.waiting,
                counts.disabled,
                0,
                has_subs,
            )
            assert got_pool == want_pool, f"{plan}: pool {got_pool} != model {want_pool}"
            assert counts.assigned <= units.seats, "more users seated than the pool has seats"

            # the Licenses row (SPEC: purchased, assigned, available, waiting)
            row = licensing.license_overview(ctx, tenant, plan)
            purchased = units.enabled + units.warning
            want = (purchased, counts.assigned, max(0, purchased - counts.assigned), counts.waiting)
            assert (row.purchased, row.assigned, row.available, row.waiting) == want, f"{plan}: overview"
            assert row.units == {
                "enabled": units.enabled,
                "warning": units.warning,
                "suspended": units.suspended,
            }

        # the plan's Users tab: licensed users in claim order, with state and sources
        for plan in PLANS:
            page = licensing.licensed_users(ctx, tenant, plan, limit=1000)
            got_users = [
                (
                    x.user["id"],
                    x.state,
                    x.claimed_at,
                    sorted((src["type"], src.get("groupId", "")) for src in x.sources),
                )
                for x in page.items
            ]
            want_users = [
                (
                    u,
                    x.state,
                    x.claim_at,
                    sorted(
                        [("direct", "")] * x.direct + [("group", g) for g in model.group_sources(plan, u)]
                    ),
                )
                for (p, u), x in sorted(model.licenses.items(), key=lambda kv: (kv[1].claim_at, kv[0][1]))
                if p == plan
            ]
            assert got_users == want_users, f"{plan}: licensed users (Users tab) differ"

        # group license status
        g = s.group_assignments
        got_groups = {
            (r.plan_id, r.group_id): (
                r.processing_state,
                r.members_total,
                r.members_seated,
                r.members_with_errors,
            )
            for r in rows(g, g)
        }
        want_groups = {}
        for plan, group in facts.group_assignments:
            members = model.transitive_users(group)
            states = [model.state(plan, u) for u in members]
            want_groups[(plan, group)] = (
                "Complete",
                len(members),
                sum(1 for x in states if x in SEATED),
                states.count(seating.ERROR),
            )
        assert got_groups == want_groups, "group_assignments status (state, total, seated, errors) differs"


def seat_events_since(
    ctx: Context, tenant: str, seen: set[str]
) -> list[tuple[str, str, str, dict[str, Any]]]:
    a = schema.audit_events
    with ctx.db.read() as conn:
        rows = conn.execute(
            select(a.c.id, a.c.action, a.c.target_id, a.c.plan_id, a.c.details).where(a.c.tenant_id == tenant)
        ).all()
    out = []
    for r in rows:
        if r.id in seen:
            continue
        seen.add(r.id)
        if r.action in SEAT_EVENTS:
            out.append((r.action, r.target_id, r.plan_id, json.loads(r.details or "{}")))
    return out


# ---------------------------------------------------------------------------------------------------------
# The machine.

idx = st.integers(min_value=0, max_value=15)
plans = st.sampled_from(PLANS)
some = st.lists(idx, min_size=0, max_size=3)


@dataclass
class Step:
    """What one step promised, checked once the worker has drained."""

    seated_after: list[tuple[str, str]] = field(default_factory=list)  # (plan, user) that must be seated
    answered: list[tuple[str, str, str | None]] = field(default_factory=list)  # (plan, user, state answered)
    reassign: tuple[str, str, str, str | None] | None = None  # (plan, from, to, from's state before)


class SeededIds:
    """Stands in for the `uuid` module of the directory service: user and group ids from a seeded sequence
    (unique within a tenant, which is all the schema asks), so that ties in claim order, broken by user id,
    replay identically and Hypothesis can shrink a failure."""

    def __init__(self) -> None:
        self.n = 0

    def uuid4(self) -> uuid.UUID:
        self.n += 1
        return uuid.UUID(bytes=hashlib.sha256(f"licensedesk-{self.n}".encode()).digest()[:16], version=4)


def build_machine(ctx: Context, ids: SeededIds) -> type[RuleBasedStateMachine]:
    class LicensingMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            ids.n = 0
            with ctx.db.write() as conn:  # the work of earlier examples' tenants must not stall the worker
                for table in (job_users, jobs, seat_reservations):
                    conn.execute(delete(table))
            self.world: World = make_world(ctx, f"sm-{next(_slugs)}-{uuid.uuid4().hex[:8]}")
            self.t = self.world.tenant
            self.users = [self.world.user(f"u{i}") for i in range(N_USERS)]
            self.groups = [self.world.group(f"G{i}") for i in range(N_GROUPS)]
            self.created = {x: n for n, x in enumerate(self.users + self.groups)}
            self.subs: list[str] = []
            self.names = itertools.count(N_USERS)
            self.step = Step()
            self.hold = 0  # steps left before the worker runs again
            self.seen_events: set[str] = set()
            seat_events_since(ctx, self.t, self.seen_events)
            self.model = recompute(read_facts(ctx, self.t))

        def order(self, ident: str) -> int:
            """Position in creation order (ids are not), so that choices replay identically."""
            return self.created[ident]

        # ------------------------------------------------------------ helpers

        def user(self, i: int) -> str:
            return self.users[i % len(self.users)]

        def group(self, i: int) -> str:
            return self.groups[i % len(self.groups)]

        def attempt(self, expected: type[Exception] | None, fn: Callable[[], Any]) -> Any:
            """Run fn; when the model expects a refusal, it must be that refusal and change nothing. While
            the worker is held the model is stale: then any refusal may come, and must change nothing."""
            if self.hold:
                before = snapshot(ctx, self.t)
                try:
                    return fn()
                except (Conflict, NotFound, ValidationFailed) as refused:
                    assert snapshot(ctx, self.t) == before, f"refused with {refused!r} but changed something"
                    return refused
            if expected is None:
                return fn()
            before = snapshot(ctx, self.t)
            with pytest.raises(expected) as refused:
                fn()
            assert snapshot(ctx, self.t) == before, f"refused with {expected.__name__} but changed something"
            return refused.value

        # ------------------------------------------------------------ setup

        @initialize(
            members=st.lists(st.tuples(idx, idx), max_size=10),
            nesting=st.lists(st.tuples(idx, idx), max_size=3),
            buys=st.lists(st.tuples(plans, st.integers(1, 4)), min_size=1, max_size=2),
            direct=st.lists(st.tuples(plans, idx), max_size=4),
            grouped=st.lists(st.tuples(plans, idx), max_size=2),
        )
        def populate(
            self,
            members: list[tuple[int, int]],
            nesting: list[tuple[int, int]],
            buys: list[tuple[str, int]],
            direct: list[tuple[str, int]],
            grouped: list[tuple[str, int]],
        ) -> None:
            """A head start: memberships, nesting, purchases and some assignments (as many as fit)."""
            for gi, ui in members:
                directory.add_members(ctx, self.t, self.group(gi), users=[self.user(ui)])
            for pi, ci in nesting:
                parent, child = self.group(pi), self.group(ci)
                if (child, parent) not in recompute(read_facts(ctx, self.t)).reach:
                    directory.add_members(ctx, self.t, parent, groups=[child])
            for plan, quantity in buys:
                self.subs.append(billing.create_subscription(ctx, self.t, plan, quantity).id)
            for plan, ui in direct:
                licensing.assign(ctx, self.t, plan, users=[self.user(ui)], allow_partial=True)
            for plan, gi in grouped:
                licensing.assign(ctx, self.t, plan, groups=[self.group(gi)], allow_partial=True)
                processing.drain(ctx)

        # ------------------------------------------------------------ licensing

        @precondition(lambda self: self.users and self.groups)
        @rule(
            plan=plans,
            users=some,
            groups=st.lists(idx, max_size=2),
            allow_partial=st.booleans(),
            dry_run=st.booleans(),
        )
        def assign(
            self, plan: str, users: list[int], groups: list[int], allow_partial: bool, dry_run: bool
        ) -> None:
            uids = [self.user(i) for i in users]
            gids = [self.group(i) for i in groups]
            if not uids and not gids:
                uids = [self.user(0)]

            def call() -> Any:
                return licensing.assign(
                    ctx, self.t, plan, users=uids, groups=gids, allow_partial=allow_partial, dry_run=dry_run
                )

            if self.hold:
                self.attempt(None, call)
                return
            m = self.model
            needed, available = m.needed(plan, uids, gids), m.available(plan)
            refused = needed > available and not allow_partial and not dry_run
            if dry_run:
                before = snapshot(ctx, self.t)
                result = call()
                assert snapshot(ctx, self.t) == before, "a dry run changed something"
                assert (result.needed, result.available, result.would_succeed) == (
                    needed,
                    available,
                    needed <= available,
                )
                return
            result = self.attempt(NotEnoughLicenses if refused else None, call)
            if refused:
                assert result.extra == {"needed": needed, "available": available}
                return
            assert (result.needed, result.available) == (needed, available)
            # the answer's states must not be contradicted by processing (SPEC: Assigning)
            self.step.answered += [(plan, r["userId"], r["state"]) for r in result.users]
            if needed <= available:
                # "provided there are enough licenses": every active user named or reached gets a seat
                targets = set(uids).union(*(m.transitive_users(g) for g in gids))
                self.step.seated_after += [(plan, u) for u in targets if m.facts.users[u][0]]

        @precondition(lambda self: self.users and self.groups)
        @rule(plan=plans, users=some, groups=st.lists(idx, max_size=2))
        def unassign(self, plan: str, users: list[int], groups: list[int]) -> None:
            uids = list(dict.fromkeys(self.user(i) for i in users))
            gids = list(dict.fromkeys(self.group(i) for i in groups))
            if not uids and not gids:
                uids = [self.user(0)]
            m = self.model
            expected: type[Exception] | None = None
            for u in uids:
                if (plan, u) not in m.facts.direct:
                    expected = LicenseInherited if m.group_sources(plan, u) else NotAssigned
                    break
            else:
                for g in gids:
                    if (plan, g) not in m.facts.group_assignments:
                        expected = NotAssigned
                        break
            refused = self.attempt(
                expected, lambda: licensing.unassign(ctx, self.t, plan, users=uids, groups=gids)
            )
            if expected is LicenseInherited and not self.hold:
                u = next(u for u in uids if (plan, u) not in m.facts.direct)
                assert sorted(x["id"] for x in refused.extra["groups"]) == sorted(m.group_sources(plan, u))

        @precondition(lambda self: len(self.users) >= 2)
        @rule(plan=plans, src=idx, dst=idx, src_direct=st.booleans())
        def reassign(self, plan: str, src: int, dst: int, src_direct: bool) -> None:
            m = self.model
            holders = sorted(
                (u for (p, u) in m.facts.direct if p == plan and u in self.users), key=self.order
            )
            a = holders[src % len(holders)] if src_direct and holders else self.user(src)
            b = self.user(dst)
            expected: type[Exception] | None = None
            if a == b:
                expected = ValidationFailed
            elif (plan, a) not in m.facts.direct:
                expected = LicenseInherited if m.group_sources(plan, a) else NotAssigned
            elif (plan, b) in m.facts.direct:
                expected = AlreadyAssigned
            self.attempt(expected, lambda: licensing.reassign(ctx, self.t, plan, a, b))
            if expected is None and not self.hold:
                self.step.reassign = (plan, a, b, m.state(plan, a))

        # ------------------------------------------------------------ directory

        @precondition(lambda self: self.users and self.groups)
        @rule(group=idx, users=st.lists(idx, min_size=1, max_size=3))
        def add_user_members(self, group: int, users: list[int]) -> None:
            directory.add_members(ctx, self.t, self.group(group), users=[self.user(i) for i in users])

        @precondition(lambda self: self.users and self.groups)
        @rule(group=idx, user=idx, only_members=st.booleans())
        def remove_user_member(self, group: int, user: int, only_members: bool) -> None:
            g = self.group(group)
            members = sorted((u for (gid, u) in self.model.facts.user_members if gid == g), key=self.order)
            u = members[user % len(members)] if only_members and members else self.user(user)
            expected = None if (g, u) in self.model.facts.user_members else NotFound
            self.attempt(expected, lambda: directory.remove_members(ctx, self.t, g, users=[u]))

        @precondition(lambda self: len(self.groups) >= 2)
        @rule(parent=idx, child=idx)
        def nest(self, parent: int, child: int) -> None:
            p, c = self.group(parent), self.group(child)
            expected = MembershipCycle if (c, p) in self.model.reach else None
            self.attempt(expected, lambda: directory.add_members(ctx, self.t, p, groups=[c]))

        @precondition(lambda self: len(self.groups) >= 2)
        @rule(edge=idx, parent=idx, child=idx)
        def unnest(self, edge: int, parent: int, child: int) -> None:
            edges = sorted(self.model.facts.group_edges, key=lambda e: (self.order(e[0]), self.order(e[1])))
            p, c = edges[edge % len(edges)] if edges and edge % 3 else (self.group(parent), self.group(child))
            expected = None if (p, c) in self.model.facts.group_edges else NotFound
            self.attempt(expected, lambda: directory.remove_members(ctx, self.t, p, groups=[c]))

        @precondition(lambda self: self.users)
        @rule(user=idx, active=st.booleans(), licensed=st.booleans())
        def set_active(self, user: int, active: bool, licensed: bool) -> None:
            holders = sorted({u for (_p, u) in self.model.licenses if u in self.users}, key=self.order)
            u = holders[user % len(holders)] if licensed and holders else self.user(user)
            directory.update_user(ctx, self.t, u, active=active)

        @precondition(lambda self: len(self.users) > 2)
        @rule(user=idx)
        def delete_user(self, user: int) -> None:
            u = self.user(user)
            directory.delete_user(ctx, self.t, u)
            self.users.remove(u)

        @precondition(lambda self: len(self.users) < N_USERS + 3)
        @rule(groups=st.lists(idx, max_size=2))
        def create_user(self, groups: list[int]) -> None:
            u = self.world.user(f"u{next(self.names)}")
            self.users.append(u)
            self.created[u] = len(self.created)
            for g in dict.fromkeys(self.group(i) for i in groups if self.groups):
                directory.add_members(ctx, self.t, g, users=[u])

        @precondition(lambda self: len(self.groups) > 1)
        @rule(group=idx)
        def delete_group(self, group: int) -> None:
            g = self.group(group)
            expected = (
                GroupHasLicenses if any(gid == g for _p, gid in self.model.facts.group_assignments) else None
            )
            self.attempt(expected, lambda: directory.delete_group(ctx, self.t, g))
            with ctx.db.read() as conn:
                groups = schema.groups
                row = select(groups.c.id).where(groups.c.tenant_id == self.t, groups.c.id == g)
                if conn.execute(row).first() is None:
                    self.groups.remove(g)

        @precondition(lambda self: len(self.groups) < N_GROUPS + 2)
        @rule(users=some)
        def create_group(self, users: list[int]) -> None:
            members = [self.user(i) for i in users] if self.users else []
            g = self.world.group(f"G{len(self.groups)}-{next(self.names)}", users=members)
            self.groups.append(g)
            self.created[g] = len(self.created)

        @precondition(lambda self: self.users and self.groups)
        @rule(user=idx, group=idx, of_group=st.booleans())
        def reprocess(self, user: int, group: int, of_group: bool) -> None:
            """Recomputing from the source of truth finds nothing to change."""
            if of_group:
                licensing.reprocess_group(ctx, self.t, self.group(group))
            else:
                licensing.reprocess_user(ctx, self.t, self.user(user))

        # ------------------------------------------------------------ billing and time

        @rule(
            plan=plans,
            quantity=st.integers(1, 4),
            status=st.sampled_from(["Active", "Warning", "Suspended"]),
            term_days=st.none() | st.integers(1, 60),
            trial=st.booleans(),
            auto_renew=st.booleans(),
        )
        def buy(
            self, plan: str, quantity: int, status: str, term_days: int | None, trial: bool, auto_renew: bool
        ) -> None:
            term = ctx.clock.now() + timedelta(days=term_days) if term_days else None
            sub = billing.create_subscription(
                ctx,
                self.t,
                plan,
                quantity,
                status=status,
                term_ends_at=term,
                trial=trial and plan == PLAN and status == "Active",
                auto_renew=auto_renew,
            )
            self.subs.append(sub.id)

        @precondition(lambda self: self.subs)
        @rule(
            sub=idx,
            quantity=st.none() | st.integers(1, 5),
            status=st.none() | st.sampled_from(seating.SUBSCRIPTION_STATUSES),
            force=st.booleans(),
        )
        def update_subscription(
            self, sub: int, quantity: int | None, status: str | None, force: bool
        ) -> None:
            sid = self.subs[sub % len(self.subs)]
            m = self.model
            plan, old_status, old_quantity = m.facts.subscriptions.get(sid, (PLAN, "Active", 1))
            new = (status or old_status, quantity or old_quantity)
            expected: type[Exception] | None = None
            if self.hold:
                pass  # the model is stale: any outcome is accepted; a refusal must change nothing
            elif old_status in seating.TERMINAL_STATUSES:
                expected = SubscriptionTerminal
            elif new != (old_status, old_quantity) and not force:
                others = [
                    (s_, q) for i, (p, s_, q) in m.facts.subscriptions.items() if p == plan and i != sid
                ]
                if seating.pool_units([*others, new]).seats < m.assigned(plan):
                    expected = QuantityBelowAssigned
            kw: dict[str, Any] = {"force": force}
            if quantity is not None:
                kw["quantity"] = quantity
            if status is not None:
                kw["status"] = status
            self.attempt(expected, lambda: billing.update_subscription(ctx, self.t, sid, **kw))

        @rule(
            delta=st.sampled_from(
                [
                    timedelta(seconds=1),
                    timedelta(hours=6),
                    timedelta(days=3),
                    timedelta(days=31),
                    timedelta(days=61),
                ]
            )
        )
        def advance_clock(self, delta: timedelta) -> None:
            ctx.clock.advance(delta)  # type: ignore[attr-defined]
            billing.advance_lifecycle(ctx)

        # ------------------------------------------------------- a direct assignment while group work waits

        @precondition(lambda self: self.users and self.groups and not self.hold)
        @rule(plan=plans, group=idx, users=st.lists(idx, min_size=1, max_size=2), allow_partial=st.booleans())
        def assign_group_then_users_before_processing(
            self, plan: str, group: int, users: list[int], allow_partial: bool
        ) -> None:
            """SPEC: a later direct assignment never takes a seat an earlier accepted assignment needs."""
            g = self.group(group)
            m = self.model
            needed, available = m.needed(plan, [], [g]), m.available(plan)
            if needed > available:
                return
            licensing.assign(ctx, self.t, plan, groups=[g])
            uids = [self.user(i) for i in users]
            before = snapshot(ctx, self.t)
            try:
                result = licensing.assign(ctx, self.t, plan, users=uids, allow_partial=allow_partial)
            except NotEnoughLicenses:
                assert snapshot(ctx, self.t) == before
            else:
                self.step.answered += [(plan, r["userId"], r["state"]) for r in result.users]
            self.step.seated_after += [(plan, u) for u in m.transitive_users(g) if m.facts.users[u][0]]

        # ------------------------------------------------------------ after every step

        @precondition(lambda self: not self.hold)
        @rule(steps=st.integers(1, 3))
        def hold_worker(self, steps: int) -> None:
            """Let the next steps run while earlier work is still queued (they are checked once it ran)."""
            self.hold = steps + 1

        @invariant()
        def matches_the_model(self) -> None:
            if self.hold:
                self.hold -= 1
                if self.hold:
                    return
            processing.drain(ctx)
            with ctx.db.read() as conn:
                failed = conn.execute(
                    select(jobs.c.kind, jobs.c.last_error).where(
                        jobs.c.tenant_id == self.t, jobs.c.last_error.is_not(None)
                    )
                ).all()
            assert not failed, f"the worker failed jobs: {failed}"
            old = self.model
            facts = read_facts(ctx, self.t)
            assert facts.reservations == [], "seat reservations left after draining"
            self.model = new = recompute(facts)
            check_engine_against_model(ctx, self.t, new)

            step, self.step = self.step, Step()
            for plan, u in step.seated_after:
                assert new.state(plan, u) in SEATED, (
                    f"{u} was promised a seat of {plan}: {new.state(plan, u)}"
                )
            for plan, u, answered in step.answered:
                assert new.state(plan, u) == answered, (
                    f"assign answered {u}: {answered} for {plan}, processing made it {new.state(plan, u)}"
                )
            if step.reassign is not None:
                plan, a, b, a_state = step.reassign
                a_before, b_before = old.licenses[(plan, a)], old.licenses.get((plan, b))
                if (
                    a_state != seating.DISABLED  # `from` held a place in claim order
                    and not a_before.via_group  # ... that the direct assignment alone gave it
                    and new.facts.users[b][0]
                    and (b_before is None or a_before.claim_at <= b_before.claim_at)
                ):
                    # SPEC: `to` takes over the seat (and `from`'s place in claim order)
                    assert new.state(plan, b) == a_state, (
                        f"reassign on {plan}: {a} was {a_state}, {b} became {new.state(plan, b)}"
                    )

            # nobody is dropped silently: every change of a license's state is audited
            events = seat_events_since(ctx, self.t, self.seen_events)
            for key in set(old.licenses) | set(new.licenses):
                was, now = old.state(*key), new.state(*key)
                if was == now:
                    continue
                plan, u = key
                tos = [d.get("to") for _a, target, p, d in events if target == u and p == plan]
                assert now in tos, (
                    f"{u} went {was} -> {now} on {plan} without an audit event saying so: {tos}"
                )

    return LicensingMachine


def test_the_engine_matches_a_from_scratch_recomputation(ctx, monkeypatch):
    ids = SeededIds()
    monkeypatch.setattr(directory, "uuid", ids)
    machine = build_machine(ctx, ids)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=int(os.environ.get("LICENSEDESK_SM_EXAMPLES", "25")),
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            phases=PHASES,
            report_multiple_bugs=False,
        ),
    )


# ---------------------------------------------------------------------------------------------------------
# Regression tests: what the machine found, minimised, each named after the rule it shows broken.


@pytest.fixture
def w(ctx):
    return make_world(ctx)


def test_a_new_member_of_two_licensed_groups_gets_the_license(w, ctx, clock):
    """SPEC: "A new member of a licensed group gets the license." Two membership changes that name the same
    user, queued before the worker runs (SCIM adding a user to two groups), are processed in one batch."""
    w.buy(5)
    one, two = w.group("One"), w.group("Two")
    licensing.assign(ctx, w.tenant, PLAN, groups=[one, two])
    w.drain()
    ann = w.user("ann")
    directory.add_members(ctx, w.tenant, one, users=[ann])
    directory.add_members(ctx, w.tenant, two, users=[ann])
    w.drain()
    clock.advance(minutes=10)  # past every retry back-off: retrying does not help either
    w.drain()
    with ctx.db.read() as conn:
        failed = conn.execute(
            select(jobs.c.kind, jobs.c.last_error).where(jobs.c.tenant_id == w.tenant)
        ).all()
    assert failed == []
    assert w.state(ann) == "Active"
    assert [s.processing_state for s in licensing.group_licenses(ctx, w.tenant, one)] == ["Complete"]


def test_a_plan_can_be_assigned_to_and_removed_from_a_group_any_number_of_times(w, ctx):
    """The help page: licenses can be reassigned at any time. Each assign/unassign of a group queues a
    group job; the queueing must keep working however often a server connection has done it before."""
    w.buy(5)
    g = w.group("Sales", users=w.users("s", 2))
    for _ in range(8):
        licensing.assign(ctx, w.tenant, PLAN, groups=[g])
        licensing.unassign(ctx, w.tenant, PLAN, groups=[g])
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    w.drain()
    assert w.overview().assigned == 2


def test_reassign_gives_to_the_seat_even_when_to_joined_after_the_assignment(w, ctx):
    """SPEC: reassign "works even when the pool is full, and `to` takes over the seat (and `from`'s place in
    claim order)" — also when `to` was created (or reactivated) after `from` was assigned."""
    w.buy(1)
    first, waiting = w.users("u", 2)
    licensing.assign(ctx, w.tenant, PLAN, users=[first])
    licensing.assign(ctx, w.tenant, PLAN, users=[waiting], allow_partial=True)
    newcomer = w.user("newcomer")
    licensing.reassign(ctx, w.tenant, PLAN, first, newcomer)
    assert w.states([newcomer, waiting]) == ["Active", "Error"]


def test_reassign_gives_to_the_place_of_from_even_against_a_waiting_user_assigned_with_from(w, ctx):
    """SPEC: `to` takes over the seat (and `from`'s place in claim order) — also when a user assigned in the
    same request as `from` (same claim time, order by user id) is waiting."""
    w.buy(1)
    first, second, third = sorted(w.users("u", 3))  # by id: the tie-break of equal claim times
    licensing.assign(ctx, w.tenant, PLAN, users=[first, second], allow_partial=True)
    assert w.states([first, second]) == ["Active", "Error"]
    licensing.reassign(ctx, w.tenant, PLAN, first, third)
    assert w.states([third, second]) == ["Active", "Error"]


def test_a_chain_of_reassignments_keeps_the_first_holders_place_in_a_tie(w, ctx):
    """`from`'s place passes on with each reassignment, and a quantity change (a reseat of the whole pool)
    keeps it: the waiting user assigned in the same request as the first holder still waits."""
    w.buy(1)
    first, second, third, fourth = sorted(w.users("u", 4))
    licensing.assign(ctx, w.tenant, PLAN, users=[first, second], allow_partial=True)
    licensing.reassign(ctx, w.tenant, PLAN, first, fourth)
    licensing.reassign(ctx, w.tenant, PLAN, fourth, third)
    extra = w.buy(1)  # a second subscription of one seat: both seated; suspending it reseats the pool
    assert w.states([third, second]) == ["Active", "Active"]
    billing.update_subscription(ctx, w.tenant, extra, status="Suspended")
    # the Active seat stays with the first holder's place; the later place gets the suspended seat
    assert w.states([third, second]) == ["Active", "Suspended"]


def test_no_answer_of_assign_is_contradicted_by_processing(w, ctx):
    """SPEC (Assigning): "no answer reports a state that processing will later contradict (short of seats
    shrinking)" — here a user and a group named in one partial assignment with one free seat."""
    w.buy(1)
    ann, bob = w.users("u", 2)
    g = w.group("Sales", users=[bob])
    answer = licensing.assign(ctx, w.tenant, PLAN, users=[ann], groups=[g], allow_partial=True)
    w.drain()
    assert [u["state"] for u in answer.users] == [w.state(ann)]


def test_a_named_user_also_in_a_named_group_keeps_the_state_assign_answered(w, ctx):
    """Found by the machine: a user named in a partial assign together with a group they are a member of
    claims at the group's grant time, tied with the group's other members (ordered by id) — the answer
    said Active, the group's processing then gave the seats to members with smaller ids. A named member
    now comes first among those ties, and the group reserves only the seats left."""
    w.buy(2)
    a, b, c = sorted(w.users("m", 3))
    g = w.group("Sales", users=[a, b, c])
    answer = licensing.assign(ctx, w.tenant, PLAN, users=[c], groups=[g], allow_partial=True)
    assert [u["state"] for u in answer.users] == ["Active"]
    assert w.overview().available == 0
    w.drain()
    assert w.states([c, a, b]) == ["Active", "Active", "Error"]
    assert (w.overview().assigned, w.overview().waiting, w.overview().reserved) == (2, 1, 0)


def test_a_dry_run_changes_nothing_even_for_a_plan_without_a_pool(w, ctx):
    """SPEC: "With dryRun: true nothing changes" — not even the Licenses row of a plan never used."""
    ann = w.user("ann")
    before = snapshot(ctx, w.tenant)
    licensing.assign(ctx, w.tenant, BASIC, users=[ann], dry_run=True)
    assert snapshot(ctx, w.tenant) == before
    with pytest.raises(NotFound):
        licensing.license_overview(ctx, w.tenant, BASIC)


def test_a_user_named_while_their_groups_work_is_queued_takes_a_seat_it_reserved(w, ctx):
    """Found by the machine: a group's assignment reserves seats for its members; one of them, named
    directly before the group's work ran, was counted as needing a seat as well — the answer refused the
    other named user the last free seat (Error), and processing then seated them (Active). The member's
    seat is the reservation's: not needed, and taken from it now."""
    w.buy(4)
    a, b, c = w.users("m", 3)
    other = w.user("other")
    g = w.group("Sales", users=[a, b, c])
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    assert w.overview().reserved == 3
    answer = licensing.assign(ctx, w.tenant, PLAN, users=[a, other], allow_partial=True)
    assert (answer.needed, answer.available) == (1, 1)
    assert [u["state"] for u in answer.users] == ["Active", "Active"]
    assert (w.overview().reserved, w.overview().available) == (2, 0)
    w.drain()
    assert w.states([a, b, c, other]) == ["Active"] * 4
    assert (w.overview().assigned, w.overview().waiting, w.overview().reserved) == (4, 0, 0)


def test_a_user_named_while_a_partial_groups_work_is_queued_comes_first_among_its_members(w, ctx):
    """The group's work reserved fewer seats than its members need: a member named directly before it ran
    comes first among the members tied on the group's grant time, so the state answered is the one
    processing leaves, whatever the ids."""
    w.buy(2)
    low, mid, high = sorted(w.users("m", 3))
    g = w.group("Sales", users=[low, mid, high])
    licensing.assign(ctx, w.tenant, PLAN, groups=[g], allow_partial=True)
    assert w.overview().reserved == 2
    answer = licensing.assign(ctx, w.tenant, PLAN, users=[high])
    assert (answer.needed, answer.available) == (0, 0)
    assert [u["state"] for u in answer.users] == ["Active"]
    w.drain()
    assert w.states([high, low, mid]) == ["Active", "Active", "Error"]
    assert (w.overview().assigned, w.overview().waiting, w.overview().reserved) == (2, 1, 0)


def test_groups_sharing_members_in_one_assign_reserve_each_member_once(w, ctx):
    """Found by the machine: two groups of one request with members in common (one nested in the other)
    each reserved seats for the common members, so the request's named user, counted after them, was
    answered Error, and processing then seated everyone."""
    w.buy(4)
    x, y, z, named = w.users("u", 4)
    inner = w.group("Inner", users=[x, y])
    outer = w.group("Outer", users=[z], groups=[inner])
    answer = licensing.assign(ctx, w.tenant, PLAN, users=[named], groups=[inner, outer])
    assert (answer.needed, answer.available) == (4, 4)
    assert [u["state"] for u in answer.users] == ["Active"]
    assert w.overview().reserved == 3
    w.drain()
    assert w.states([x, y, z, named]) == ["Active"] * 4


def test_a_group_assigned_while_its_members_earlier_group_work_is_queued_reserves_no_seat_twice(w, ctx):
    """A second group sharing members with a group whose work is still queued: the shared members' seats
    are the first work's; they are neither needed again nor reserved twice."""
    w.buy(3)
    x, y, z = w.users("u", 3)
    first = w.group("First", users=[x, y])
    second = w.group("Second", users=[y, z])
    licensing.assign(ctx, w.tenant, PLAN, groups=[first])
    answer = licensing.assign(ctx, w.tenant, PLAN, groups=[second])
    assert (answer.needed, answer.available) == (1, 1)
    assert w.overview().reserved == 3
    w.drain()
    assert w.states([x, y, z]) == ["Active"] * 3
    assert (w.overview().assigned, w.overview().reserved) == (3, 0)


def test_reassigning_to_a_user_whose_group_work_is_queued_frees_the_seat_it_reserved(w, ctx):
    """`to` takes `from`'s seat; the seat that `to`'s queued group work had reserved for it is free again,
    so a later assign is not refused a seat that processing then leaves free."""
    w.buy(3)
    x, a, b, y = w.users("u", 4)
    licensing.assign(ctx, w.tenant, PLAN, users=[x])
    g = w.group("Sales", users=[a, b])
    licensing.assign(ctx, w.tenant, PLAN, groups=[g])
    assert w.overview().available == 0
    moved = licensing.reassign(ctx, w.tenant, PLAN, x, a)
    assert moved.to_user["state"] == "Active"
    assert (w.overview().reserved, w.overview().available) == (1, 1)
    answer = licensing.assign(ctx, w.tenant, PLAN, users=[y], allow_partial=True)
    assert [u["state"] for u in answer.users] == ["Active"]
    w.drain()
    assert w.states([a, b, y, x]) == ["Active", "Active", "Active", None]
