"""The change feed (db/changes.py): a commit of this process changes its tenant's version once, at once;
the poll then finds nothing new for it; commits of other processes come in by the poll; a version never
goes back."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from licensedesk.db import changes
from licensedesk.db.changes import ChangeFeed
from licensedesk.db.engine import Database


def test_a_commit_of_this_process_changes_the_version_once(db: Database) -> None:
    feed = ChangeFeed(db, poll_seconds=3600)
    # told of this process's commits, with no poller or listener of its own polling behind the test's back
    changes._local_listeners.append(feed.changed)
    try:
        start = feed.version("t1")
        with db.write() as conn:
            changes.bump(conn, "t1")
            changes.bump(conn, "t1")  # once per transaction
            assert feed.version("t1") == start  # not before the commit
        mine = feed.version("t1")
        assert mine != start
        assert feed.superseded_within("t1", start, 5.0) and not feed.superseded_within("t1", mine, 5.0)
        assert feed.poll() == 0 and feed.version("t1") == mine  # the poll reads the same counter

        # another process's commit (the counter moved without this process's knowledge): the poll finds it
        with db.write() as conn:
            conn.execute(text("UPDATE change_counters SET version = version + 1 WHERE tenant_id = 't1'"))
        assert feed.version("t1") == mine
        assert feed.poll() == 1
        theirs = feed.version("t1")
        assert theirs != mine and feed.superseded_within("t1", mine, 5.0)

        # a later commit told by this process before a poll that read an older counter: no step back
        feed.changed("t1", 1000)
        latest = feed.version("t1")
        assert latest != theirs
        assert feed.poll() == 0 and feed.version("t1") == latest
    finally:
        changes._local_listeners.remove(feed.changed)
        feed.stop()


def test_a_change_told_without_a_version_still_makes_the_version_new(db: Database) -> None:
    feed = ChangeFeed(db, poll_seconds=3600)
    before = feed.version("t2")
    feed.changed("t2")
    assert feed.version("t2") != before and feed.superseded_within("t2", before, 5.0)
    assert not feed.superseded_within("t2", before, 0.0)


def test_the_poll_keeps_its_connection_out_of_transactions_and_reconnects_after_losing_it(
    db: Database, backend: str
) -> None:
    feed = ChangeFeed(db, poll_seconds=3600)
    try:
        with db.write() as conn:
            changes.bump(conn, "t3")
        feed.poll()
        assert feed.version("t3")[0] == 1
        if backend == "postgresql":  # an open transaction would hold back vacuum for as long as it runs
            with db.read() as conn:
                idle_in_transaction = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            assert idle_in_transaction == 0
        feed._raw.driver_connection.close()  # the database dropped the connection
        with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises; the poller logs it
            feed.poll()
        with db.write() as conn:
            conn.execute(text("UPDATE change_counters SET version = version + 1 WHERE tenant_id = 't3'"))
        assert feed.poll() == 1 and feed.version("t3")[0] == 2  # on a new connection
    finally:
        feed.stop()
