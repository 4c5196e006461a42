"""The audit log filtered by action, actor or plan pages the same whichever index SQLite is told to read
(the filter's for a value with few events, the log's own for a common one), in the log's order, with no
event skipped or repeated across pages, also among events written at one instant (a fan-out's)."""

from __future__ import annotations

from sqlalchemy import event

from licensedesk.audit import repository
from licensedesk.audit import service as audit
from licensedesk.context import Actor
from tests.world import make_world


def test_filtered_pages_are_complete_and_in_order_for_rare_and_common_values(ctx, monkeypatch):
    w = make_world(ctx)
    alice = ctx.as_actor(Actor("user", "alice", "alice@contoso.com"), None)
    with ctx.db.write() as conn:  # 30 events of one action at one instant (as a fan-out writes them)
        audit.record_many(
            conn, ctx, w.tenant, [("user.updated", audit.Target("user", f"u{i}"), None) for i in range(30)]
        )
    for i in range(3):
        w.user(f"rare{i}")
    with ctx.db.write() as conn:
        audit.record(conn, alice, w.tenant, "user.deleted", audit.Target("user", "x"))
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(ctx.db.engine, "before_cursor_execute", seen)
    for rare in (2, 100):  # every value here common (the log's index), then every one rare (the filter's)
        monkeypatch.setattr(repository, "RARE", rare)
        for kw in ({"action": "user.updated"}, {"action": "user.created"}, {"actor_id": "alice"}):
            every = audit.query(ctx, w.tenant, limit=1000, **kw).items
            assert every and all(e.action == kw["action"] for e in every) if "action" in kw else every
            paged, cursor = [], None
            while True:
                page = audit.query(ctx, w.tenant, limit=7, cursor=cursor, **kw)
                paged += page.items
                cursor = page.next_cursor
                if not cursor:
                    break
            assert [e.id for e in paged] == [e.id for e in every]
            assert [(e.at, e.id) for e in every] == sorted(((e.at, e.id) for e in every), reverse=True)
    if ctx.db.is_sqlite:
        hinted = [s for s in statements if "INDEXED BY ix_audit_events_action" in s and "LIMIT" in s]
        assert hinted, "the action's index was never used"
