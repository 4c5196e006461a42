"""Issue 8, abuse: SCIM list pages are capped. RFC 7644 section 3.4.2.4: a `count` above what the
service provider allows is answered with at most that many resources (clamped, not refused); licensedesk
announces filter.maxResults = 1000 and holds to it."""

from __future__ import annotations

from licensedesk.directory import service as directory
from licensedesk.scim.provider import MAX_RESULTS


def test_a_count_above_the_maximum_is_clamped_to_it(scim):  # type: ignore[no-untyped-def]
    config = scim.get("/ServiceProviderConfig").json()
    assert config["filter"]["maxResults"] == MAX_RESULTS == 1000
    n = MAX_RESULTS + 3
    ctx, tenant = scim.world.ctx, scim.world.tenant
    with ctx.db.write() as conn:  # one transaction: seconds less than one per user
        for i in range(n):
            directory.create_user_in(conn, ctx, tenant, f"many{i:04d}@contoso.com", f"Many {i}")
    for count in (MAX_RESULTS + 1, 100_000, 10**12):
        r = scim.get("/Users", params={"count": count, "sortBy": "userName"})
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["totalResults"] == n
        assert page["itemsPerPage"] == len(page["Resources"]) == MAX_RESULTS
    rest = scim.get("/Users", params={"count": 5000, "startIndex": MAX_RESULTS + 1, "sortBy": "userName"})
    assert len(rest.json()["Resources"]) == 3
    # the default page is no larger
    assert len(scim.get("/Users").json()["Resources"]) <= MAX_RESULTS
    # not a number: a SCIM error, not a 5xx
    bad = scim.get("/Users", params={"count": "lots"})
    assert bad.status_code == 400, bad.text
