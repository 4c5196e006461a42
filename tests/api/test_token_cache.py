"""API tokens verified by a process are not looked up again while their tenant has not changed; revoking
one is a change of its tenant, seen by the process that revoked it at once and by every other process
when its change feed next reads the counters (within a second)."""

from __future__ import annotations

from sqlalchemy import update

from licensedesk.auth import repository
from licensedesk.auth import service as auth
from licensedesk.db.schema import api_tokens, change_counters


def test_a_verified_token_is_not_looked_up_again_until_its_tenant_changes(api, monkeypatch):
    lookups: list[str] = []
    real = repository.by_hash

    def counting(conn, digest):  # type: ignore[no-untyped-def]
        lookups.append(digest)
        return real(conn, digest)

    monkeypatch.setattr(repository, "by_hash", counting)
    path = f"/v1/tenants/{api.tenant}/licenses"
    for _ in range(5):
        assert api.client.get(path, headers=api.headers("reader")).status_code == 200
    assert len(lookups) <= 2  # the first verifies it (and learns its tenant); the next one caches it
    before = len(lookups)
    api.post(f"/v1/tenants/{api.tenant}/users", {"userPrincipalName": "new@contoso.com"})  # a change
    assert api.client.get(path, headers=api.headers("reader")).status_code == 200
    assert len(lookups) > before  # looked up again after the tenant changed


def test_a_token_revoked_by_this_process_is_refused_at_once(api):
    path = f"/v1/tenants/{api.tenant}/licenses"
    secret = auth.create_token(api.ctx, "reader", tenant_ref=api.tenant, name="soon revoked")
    token, value = secret
    for _ in range(3):
        assert api.client.get(path, headers={"Authorization": f"Bearer {value}"}).status_code == 200
    auth.revoke_token(api.ctx, api.tenant, token.id)
    assert api.client.get(path, headers={"Authorization": f"Bearer {value}"}).status_code == 401


def test_a_token_revoked_by_another_process_is_refused_once_the_feed_has_read_the_counters(api):
    path = f"/v1/tenants/{api.tenant}/licenses"
    token, value = auth.create_token(api.ctx, "reader", tenant_ref=api.tenant, name="revoked elsewhere")
    bearer = {"Authorization": f"Bearer {value}"}
    for _ in range(3):
        assert api.client.get(path, headers=bearer).status_code == 200
    # another process revokes it: its commit reaches this one only through the counters table
    with api.ctx.db.engine.begin() as conn:
        conn.execute(
            update(api_tokens).where(api_tokens.c.id == token.id).values(revoked_at=api.ctx.clock.now())
        )
        conn.execute(
            update(change_counters)
            .where(change_counters.c.tenant_id == api.tenant)
            .values(version=change_counters.c.version + 1)
        )
    api.client.app.state.feed.poll()  # what its poller (every 0.25 s) or NOTIFY does
    assert api.client.get(path, headers=bearer).status_code == 401
