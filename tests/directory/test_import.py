"""CSV import of users and groups (SPEC section 4): idempotent, streamed in batches, one line per rejected
row, a dry run that changes nothing, and license effects through the group rules."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from licensedesk.audit import service as audit
from licensedesk.cli import app
from licensedesk.db.schema import audit_events, directory_terms, group_user_members, groups, users
from licensedesk.directory import importer
from licensedesk.directory import service as directory
from licensedesk.licensing import service as licensing
from tests.world import PLAN, make_world

HEADER = "userPrincipalName,displayName,externalId,groups\n"


def counts(ctx) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with ctx.db.read() as conn:
        return {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in (users, groups, group_user_members, directory_terms, audit_events)
        }


def run_import(ctx, text: str, **kw):  # type: ignore[no-untyped-def]
    return importer.import_users(ctx, "contoso", io.StringIO(text), **kw)


@pytest.fixture
def world(ctx):  # type: ignore[no-untyped-def]
    return make_world(ctx, "contoso")


def test_import_creates_users_and_groups_and_reimport_changes_nothing(ctx, world):  # type: ignore[no-untyped-def]
    text = HEADER + (
        "alice@contoso.com,Alice Archer,oid-1,Sales;Everyone\n"
        "bob@contoso.com,Bob Baker,,Everyone\n"
        "carol@contoso.com,,oid-3,\n"
    )
    summary = run_import(ctx, text)
    assert (summary.rows, summary.created, summary.groups_created, summary.memberships_added) == (3, 3, 2, 3)
    assert summary.rejected == 0
    alice = directory.get_user(ctx, "contoso", "alice@contoso.com")
    assert (alice.display_name, alice.external_id) == ("Alice Archer", "oid-1")
    names = {g.display_name for g in directory.user_groups(ctx, "contoso", alice.id)}
    assert names == {"Sales", "Everyone"}
    # searchable like any other user
    assert [u.id for u in directory.list_users(ctx, "contoso", search="archer").items] == [alice.id]
    created = audit.query(ctx, world.tenant, target_id=alice.id).items
    assert [e.action for e in created] == ["user.created"]

    before = counts(ctx)
    again = run_import(ctx, text)
    assert (again.created, again.updated, again.unchanged, again.memberships_added, again.groups_created) == (
        0,
        0,
        3,
        0,
        0,
    )
    assert counts(ctx) == before  # nothing changed, no audit event written


def test_changed_rows_update_the_user(ctx, world):  # type: ignore[no-untyped-def]
    run_import(ctx, HEADER + "alice@contoso.com,Alice,oid-1,\n")
    summary = run_import(ctx, HEADER + "ALICE@contoso.com,Alice Renamed,oid-1,Sales\n")
    assert (summary.updated, summary.memberships_added, summary.groups_created) == (1, 1, 1)
    assert directory.get_user(ctx, "contoso", "alice@contoso.com").display_name == "Alice Renamed"


def test_bad_and_duplicate_rows_are_rejected_with_row_and_reason(ctx, world):  # type: ignore[no-untyped-def]
    directory.create_user(ctx, "contoso", "owner@contoso.com", external_id="taken")
    text = HEADER + (
        "good@contoso.com,Good,,\n"  # row 2
        "not-an-email,Bad,,\n"  # row 3
        "good@contoso.com,Again,,\n"  # row 4: duplicate of row 2
        "other@contoso.com,Other,taken,\n"  # row 5: externalId of another user
        "extra@contoso.com,Extra,,,surplus\n"  # row 6: too many fields
        "short@contoso.com\n"  # row 7: too few
        "x@contoso.com,X,oid-x,\n"  # row 8
        "y@contoso.com,Y,oid-x,\n"  # row 9: duplicate externalId
    )
    summary = run_import(ctx, text)
    rejected = {r.row: r.reason for r in summary.rejections}
    assert sorted(rejected) == [3, 4, 5, 6, 7, 9], rejected
    assert "e-mail" in rejected[3]
    assert "duplicate of row 2" in rejected[4]
    assert "taken" in rejected[5]
    assert "more fields" in rejected[6] and "fewer fields" in rejected[7]
    assert "duplicate of row 8" in rejected[9]
    assert (summary.rows, summary.created, summary.rejected) == (8, 2, 6)
    assert directory.get_user(ctx, "contoso", "good@contoso.com").display_name == "Good"


def test_a_wrong_header_is_refused_before_anything_changes(ctx, world):  # type: ignore[no-untyped-def]
    before = counts(ctx)
    with pytest.raises(Exception, match="header"):
        run_import(ctx, "email,name\nalice@contoso.com,Alice\n")
    assert counts(ctx) == before


def test_dry_run_counts_but_changes_nothing(ctx, world):  # type: ignore[no-untyped-def]
    before = counts(ctx)
    summary = run_import(ctx, HEADER + "a@contoso.com,A,,G1\nb@contoso.com,B,,G1\n", dry_run=True)
    assert (summary.created, summary.groups_created, summary.memberships_added) == (2, 1, 2)
    assert counts(ctx) == before


def test_new_members_of_a_licensed_group_are_seated(ctx, world):  # type: ignore[no-untyped-def]
    world.buy(1)
    gid = world.group("Licensed")
    licensing.assign(ctx, world.tenant, PLAN, groups=[gid], allow_partial=True)
    world.drain()
    run_import(ctx, HEADER + "first@contoso.com,First,,Licensed\nsecond@contoso.com,Second,,licensed\n")
    world.drain()
    first = directory.get_user(ctx, "contoso", "first@contoso.com").id
    second = directory.get_user(ctx, "contoso", "second@contoso.com").id
    # added at the same moment: one seat, taken in claim order (ties by user id), the other waits
    assert sorted(world.states([first, second])) == ["Active", "Error"]


def test_cli_import_prints_progress_summary_and_rejections(ctx, world, database_url, monkeypatch, tmp_path):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LICENSEDESK_DATABASE_URL", database_url)
    from licensedesk.settings import get_settings

    get_settings.cache_clear()
    try:
        path = tmp_path / "users.csv"
        path.write_text(HEADER + "a@contoso.com,A,,G\nnope,B,,\n")
        runner = CliRunner()
        dry = runner.invoke(app, ["users", "import", str(path), "--tenant", "contoso", "--dry-run"])
        assert "1 users would be created" in dry.stdout and "dry run" in dry.stdout
        assert directory.count_users(ctx, "contoso") == 0
        done = runner.invoke(app, ["users", "import", str(path), "--tenant", "contoso"])
        assert done.exit_code == 1  # a row was rejected
        assert "row 3:" in done.stderr and "e-mail" in done.stderr
        assert "2 rows: 1 users were created" in done.stdout and "1 rows rejected" in done.stdout
        assert directory.count_users(ctx, "contoso") == 1
    finally:
        get_settings.cache_clear()


def _lines(n: int) -> Iterator[str]:
    yield HEADER
    for i in range(n):
        group = f"Everyone;Team {i % 50}" if i % 10 == 0 else ""
        yield f"user{i:06d}@contoso.com,User {i},oid-{i},{group}\n"


@pytest.mark.slow
def test_a_100k_row_file_imports_in_batches(ctx, world, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "big.csv"
    with path.open("w") as f:
        f.writelines(_lines(100_000))
    progress: list[int] = []
    with path.open(newline="") as source:
        summary = importer.import_users(ctx, "contoso", source, on_progress=progress.append)
    assert (summary.rows, summary.created, summary.rejected) == (100_000, 100_000, 0)
    assert summary.memberships_added == 20_000 and summary.groups_created == 6  # Everyone, Team 0..40
    assert directory.count_users(ctx, "contoso") == 100_000
    assert len(progress) >= 100 and progress[-1] == 100_000  # written batch by batch
    with path.open(newline="") as source:
        again = importer.import_users(ctx, "contoso", source)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 100_000)
