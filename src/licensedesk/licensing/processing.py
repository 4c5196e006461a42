"""Group processing: the worker's side of group assignments and membership changes.

A job is idempotent: it recomputes its users' licenses from the source of truth (assignments,
memberships, the pool), so running it twice, or after a crash, gives the same state. A claimed job is
leased; if its worker dies, the lease runs out and another worker takes it over.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection

from licensedesk.context import SYSTEM, Context
from licensedesk.directory import service as directory
from licensedesk.licensing import repository as repo
from licensedesk.licensing import service as licensing

log = logging.getLogger("licensedesk.worker")

USERS_BATCH = 1000


def claim(ctx: Context, token: str, *, lease_seconds: int = 120) -> list[Any]:
    """Lease the next due job (or batch of membership jobs of one tenant) and mark its groups InProgress."""
    now = ctx.clock.now()
    with ctx.db.write() as conn:
        claimed = repo.claim_jobs(conn, now, now + timedelta(seconds=lease_seconds), token, USERS_BATCH)
        for job in claimed:
            if job.kind == "group_plan":
                repo.set_processing_state(
                    conn, job.tenant_id, [job.target_id], "InProgress", plan_id=job.plan_id
                )
            else:
                repo.set_processing_state(
                    conn,
                    job.tenant_id,
                    directory.ancestor_ids(conn, job.tenant_id, job.target_id),
                    "InProgress",
                )
    return claimed


def run_once(ctx: Context, *, lease_seconds: int = 120) -> int:
    """Claim and process one job (or one batch of membership jobs of a tenant). Answers how many jobs
    were finished (0 when none was due)."""
    ctx = ctx.as_actor(SYSTEM)
    token = str(uuid.uuid4())
    claimed = claim(ctx, token, lease_seconds=lease_seconds)
    if not claimed:
        return 0
    tenant_id = claimed[0].tenant_id
    job_ids = [j.id for j in claimed]
    try:
        with ctx.db.write() as conn:
            if not repo.jobs_still_leased(conn, tenant_id, job_ids, token):
                return 0  # our lease ran out and another worker took the jobs over
            _process(conn, ctx, tenant_id, claimed)
            repo.finish_jobs(conn, tenant_id, job_ids)
    except Exception as exc:
        attempts = max(j.attempts for j in claimed) + 1
        log.exception("job %s of tenant %s failed (attempt %d)", job_ids[0], tenant_id, attempts)
        with ctx.db.write() as conn:
            repo.fail_jobs(
                conn,
                tenant_id,
                job_ids,
                token,
                repr(exc),
                ctx.clock.now() + timedelta(seconds=min(300, 2**attempts)),
            )
        return 0
    log.info("finished %d job(s) of tenant %s: %s", len(claimed), tenant_id, " ".join(job_ids))
    return len(claimed)


def _process(conn: Connection, ctx: Context, tenant_id: str, claimed: list[Any]) -> None:
    now = ctx.clock.now()
    if claimed[0].kind == "group_plan":
        job = claimed[0]
        repo.lock_pool(conn, tenant_id, job.plan_id, now)
        batch = repo.new_batch()
        repo.scope_from(
            conn, tenant_id, batch, directory.transitive_user_ids_select(tenant_id, job.target_id)
        )
        licensing.apply_scope(conn, ctx, tenant_id, job.plan_id, batch, now, release_jobs=[job.id])
        repo.clear_batch(conn, tenant_id, batch)
        repo.recount_group_status(conn, tenant_id, [job.target_id], now, complete=True, plan_id=job.plan_id)
        return
    job_ids = [j.id for j in claimed]
    licensing.recompute_users(
        conn,
        ctx,
        tenant_id,
        user_select=repo.job_user_ids_select(tenant_id, job_ids),
        release_jobs=job_ids,
        now=now,
    )
    groups: set[str] = set()
    for target in {j.target_id for j in claimed}:
        groups.update(directory.ancestor_ids(conn, tenant_id, target))
    repo.recount_group_status(conn, tenant_id, sorted(groups), now, complete=True)


def drain(ctx: Context, *, max_jobs: int = 1_000_000) -> int:
    """Process jobs until none is due (tests and the CLI use it). Answers how many were finished."""
    done = 0
    while done < max_jobs:
        n = run_once(ctx)
        if n == 0:
            break
        done += n
    return done
