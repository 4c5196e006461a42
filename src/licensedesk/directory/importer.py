"""CSV import of users and their groups (SPEC section 4): `licensedesk users import FILE.csv --tenant t`.

Columns `userPrincipalName, displayName, externalId, groups` (groups `;`-separated names, created when
missing). The file is streamed and written in batches, one transaction each, with set-based statements;
re-importing the same file changes nothing and writes no audit event. A row is either applied or
rejected with its row number and reason; memberships are only ever added (a user's other groups stay).
"""

from __future__ import annotations

import csv
import hashlib
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from sqlalchemy import Connection

from licensedesk import fields
from licensedesk.audit import service as audit
from licensedesk.context import Context
from licensedesk.directory import repository as repo
from licensedesk.directory import service as directory
from licensedesk.errors import DomainError, ValidationFailed
from licensedesk.tenancy import service as tenancy

COLUMNS = ("userPrincipalName", "displayName", "externalId", "groups")
BATCH = 1000


@dataclass
class Rejected:
    row: int  # the line of the file (the header is row 1)
    reason: str


@dataclass
class ImportSummary:
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    groups_created: int = 0
    memberships_added: int = 0
    rejected: int = 0
    dry_run: bool = False
    rejections: list[Rejected] = field(default_factory=list, repr=False)  # only without on_reject


@dataclass
class Row:
    number: int
    upn: str
    display_name: str
    external_id: str | None
    groups: list[str]


class _DryRun(Exception):
    """Raised to roll a dry run's batch back."""


def _parse(number: int, raw: dict[str, Any]) -> Row:
    if None in raw:
        raise ValidationFailed("the row has more fields than the header")
    missing = [c for c in COLUMNS if raw.get(c) is None]
    if missing:
        raise ValidationFailed(f"the row has fewer fields than the header (no {missing[0]})")
    upn = fields.user_principal_name((raw["userPrincipalName"] or "").strip())
    display_name = fields.text(
        (raw["displayName"] or "").strip(), "displayName", max_length=256, required=False
    )
    external_id = fields.optional_text(
        (raw["externalId"] or "").strip() or None, "externalId", max_length=200
    )
    groups = []
    for name in (raw["groups"] or "").split(";"):
        if name.strip():
            groups.append(fields.text(name.strip(), "groups", max_length=256))
    return Row(number, upn, display_name, external_id, list(dict.fromkeys(groups)))


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=8).digest()


def import_users(
    ctx: Context,
    tenant_ref: str,
    source: TextIO,
    *,
    dry_run: bool = False,
    batch_size: int = BATCH,
    on_reject: Callable[[Rejected], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> ImportSummary:
    """Import a CSV stream. `on_progress` gets the number of rows handled after each batch."""
    summary = ImportSummary(dry_run=dry_run)
    reject = on_reject or summary.rejections.append
    with ctx.db.read() as conn:
        tenant_id = tenancy.resolve(conn, tenant_ref).id
    reader = csv.DictReader(source)
    header = [h.strip() for h in reader.fieldnames or []]
    if sorted(header) != sorted(COLUMNS):
        raise ValidationFailed(f"the header must name the columns {', '.join(COLUMNS)}", field="header")
    reader.fieldnames = header
    # 8-byte digests of the userPrincipalNames and externalIds already seen: a later row naming one
    # again is a duplicate (the rows themselves are never kept)
    seen_upns: dict[bytes, int] = {}
    seen_external: dict[bytes, int] = {}
    batch: list[Row] = []
    analyzed_at = [0]  # users created when the planner statistics were last refreshed

    def flush() -> None:
        if batch:
            _write_batch(ctx, tenant_id, batch, summary, reject, dry_run)
            batch.clear()
            # each time the import has doubled what it created, so log(n) times in all
            if not dry_run and summary.created >= max(2 * analyzed_at[0], batch_size):
                with ctx.db.write() as conn:
                    repo.refresh_statistics(conn)
                analyzed_at[0] = summary.created
        if on_progress is not None:
            on_progress(summary.rows)

    for index, raw in enumerate(reader):
        number = index + 2
        summary.rows += 1
        try:
            row = _parse(number, raw)
        except DomainError as exc:
            summary.rejected += 1
            reject(Rejected(number, exc.detail))
            continue
        key = _digest(row.upn.lower())
        if key in seen_upns:
            summary.rejected += 1
            reject(Rejected(number, f"duplicate of row {seen_upns[key]} (userPrincipalName {row.upn})"))
            continue
        if row.external_id is not None:
            ext = _digest(row.external_id)
            if ext in seen_external:
                summary.rejected += 1
                reject(
                    Rejected(number, f"duplicate of row {seen_external[ext]} (externalId {row.external_id})")
                )
                continue
            seen_external[ext] = number
        seen_upns[key] = number
        batch.append(row)
        if len(batch) >= batch_size:
            flush()
    flush()
    return summary


def _write_batch(
    ctx: Context,
    tenant_id: str,
    rows: list[Row],
    summary: ImportSummary,
    reject: Callable[[Rejected], None],
    dry_run: bool,
) -> None:
    counts = ImportSummary()
    rejected: list[Rejected] = []
    try:
        with ctx.db.write() as conn:
            _apply(conn, ctx, tenant_id, rows, counts, rejected)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    for r in rejected:
        reject(r)
    summary.created += counts.created
    summary.updated += counts.updated
    summary.unchanged += counts.unchanged
    summary.groups_created += counts.groups_created
    summary.memberships_added += counts.memberships_added
    summary.rejected += len(rejected)


def _apply(
    conn: Connection, ctx: Context, t: str, rows: list[Row], counts: ImportSummary, rejected: list[Rejected]
) -> None:
    existing = repo.users_by_refs(conn, t, [r.upn for r in rows])
    by_external = repo.users_by_external_ids(conn, t, [r.external_id for r in rows if r.external_id])
    now = ctx.clock.now()
    new_users: list[dict[str, Any]] = []
    terms: list[dict[str, Any]] = []
    events: list[tuple[str, audit.Target, dict[str, Any] | None]] = []
    user_ids: dict[int, str] = {}
    for row in rows:
        current = existing.get(row.upn)
        owner = by_external.get(row.external_id) if row.external_id else None
        if owner is not None and (current is None or owner.id != current.id):
            rejected.append(
                Rejected(row.number, f"externalId {row.external_id} belongs to {owner.user_principal_name}")
            )
            continue
        if current is None:
            user_id = str(uuid.uuid4())
            new_users.append(
                {
                    "tenant_id": t,
                    "id": user_id,
                    "user_principal_name": row.upn,
                    "upn_key": row.upn.lower(),
                    "display_name": row.display_name,
                    "external_id": row.external_id,
                    "active": True,
                    "activated_at": repo.EPOCH,
                    "created_at": now,
                    "updated_at": now,
                }
            )
            for term, rank in sorted(repo.search_terms(row.upn, row.display_name).items()):
                terms.append(
                    {"tenant_id": t, "term": term, "rank": rank, "kind": "user", "object_id": user_id}
                )
            events.append(
                (
                    "user.created",
                    audit.Target("user", user_id, row.upn),
                    {
                        "displayName": row.display_name,
                        "externalId": row.external_id,
                        "active": True,
                        "source": "csv",
                    },
                )
            )
            user_ids[row.number] = user_id
            counts.created += 1
            continue
        user_ids[row.number] = current.id
        if (current.display_name, current.external_id) != (row.display_name, row.external_id):
            directory.update_user_in(
                conn, ctx, t, current, display_name=row.display_name, external_id=row.external_id
            )
            counts.updated += 1
        else:
            counts.unchanged += 1
    repo.insert_users(conn, new_users)
    repo.insert_terms(conn, terms)
    audit.record_many(conn, ctx, t, events, at=now)
    _add_memberships(
        conn, ctx, t, [(user_ids[r.number], r.groups) for r in rows if r.number in user_ids], counts
    )


def _add_memberships(
    conn: Connection, ctx: Context, t: str, wanted: Sequence[tuple[str, list[str]]], counts: ImportSummary
) -> None:
    by_group: dict[str, list[str]] = {}
    for user_id, names in wanted:
        for name in names:
            by_group.setdefault(name.lower(), []).append(user_id)
    if not by_group:
        return
    for key, user_ids in by_group.items():
        group = repo.group_by_name(conn, t, key)
        if group is None:
            group = directory.create_group_in(conn, ctx, t, _display_name(key, wanted))
            counts.groups_created += 1
        present = repo.existing_user_members(conn, t, group.id, user_ids)
        new = [u for u in dict.fromkeys(user_ids) if u not in present]
        if new:
            directory.change_members_in(conn, ctx, t, group, add_users=new)
            counts.memberships_added += len(new)


def _display_name(key: str, wanted: Sequence[tuple[str, list[str]]]) -> str:
    for _user_id, names in wanted:
        for name in names:
            if name.lower() == key:
                return name
    return key
