"""The FastAPI application: `create_app()` for uvicorn (`licensedesk.app:create_app`, factory=True)."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text

from licensedesk import __version__, metrics
from licensedesk.api import problems
from licensedesk.api.middleware import BodyLimit, RequestContext
from licensedesk.auth.oidc import JwksCache
from licensedesk.checks.routes import CheckFastPath
from licensedesk.checks.service import Checker
from licensedesk.clock import Clock, SystemClock
from licensedesk.context import Context
from licensedesk.db.changes import ChangeFeed
from licensedesk.db.engine import Database
from licensedesk.db.migrate import is_current, upgrade
from licensedesk.licensing import service as licensing
from licensedesk.ratelimit import RateLimiter
from licensedesk.settings import Settings, get_settings
from licensedesk.worker import Periodic, Worker

log = logging.getLogger("licensedesk")

DESCRIPTION = """
The licensing back end of per-user licensed products: tenants, the catalog, the directory (users and
nested groups), purchases (subscriptions), assignments, the derived licenses, and their audit log.

Authenticate with `Authorization: Bearer <token>`: an API token (`ld_...`) or an OIDC access token of the
tenant's identity provider whose `roles` claim names licensedesk roles. Errors are RFC 9457 problem
documents with a stable `code`. Mutating POSTs accept `Idempotency-Key`.
"""


class LicensedeskApp(FastAPI):
    """FastAPI, with the run-time check's hot path in front of everything else."""

    fast_path: CheckFastPath | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        fast = self.fast_path
        if fast is not None:
            match = fast.handles(scope)
            if match is not None:
                await fast.serve(scope, match, send)
                return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    db: Database | None = None,
    clock: Clock | None = None,
    run_worker: bool | None = None,
    migrate: bool = True,
) -> LicensedeskApp:
    settings = settings or get_settings()
    if run_worker is None:
        run_worker = settings.run_worker
    if not logging.getLogger().handlers:
        from licensedesk import logs

        logs.configure(settings.log_level)
    database = db or Database(settings.database_url)
    if migrate:
        upgrade(database)
    ctx = Context(db=database, clock=clock or SystemClock())
    worker = Worker(ctx, poll_seconds=settings.worker_poll_seconds, lease_seconds=settings.job_lease_seconds)
    feed = ChangeFeed(database, poll_seconds=settings.change_poll_seconds)
    checker = Checker(
        ctx,
        feed,
        public_url=settings.public_url,
        dev_issuer=settings.dev_issuer,
        token_limiter=RateLimiter(settings.check_rate_per_token, settings.check_burst_per_token),
        address_limiter=RateLimiter(settings.check_rate_per_address, settings.check_burst_per_address),
    )
    usage_flusher = Periodic(checker.usage.flush, every_seconds=10.0, name="licensedesk-usage")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        feed.start()
        usage_flusher.start()
        if run_worker:
            worker.start()
        if settings.gc_freeze:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            if run_worker:
                worker.stop()
            usage_flusher.stop()
            feed.stop()
            if db is None:
                database.dispose()

    app = LicensedeskApp(
        title="licensedesk",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks look at the environment on every request: off (we export
        # Prometheus metrics ourselves)
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ctx = ctx
    app.state.settings = settings
    app.state.jwks = JwksCache()
    app.state.api_limiter = RateLimiter(settings.api_rate_per_credential, settings.api_burst_per_credential)
    app.state.scim_limiter = RateLimiter(
        settings.scim_rate_per_credential, settings.scim_burst_per_credential
    )
    app.state.auth_failures = RateLimiter(settings.auth_failures_per_address, settings.auth_failures_burst)
    app.state.worker = worker
    app.state.checker = checker
    app.state.feed = feed
    metrics.set_queue_depth_source(lambda: licensing.queue_depth(ctx))

    problems.install(app)
    _mount_routes(app, dev_issuer=settings.dev_issuer)
    app.add_middleware(BodyLimit, limit=1024 * 1024, overrides=(("/scim/", 10 * 1024 * 1024),))
    app.add_middleware(RequestContext)
    app.fast_path = CheckFastPath(lambda: app.state.checker)
    return app


def _mount_routes(app: FastAPI, *, dev_issuer: bool) -> None:
    from licensedesk.audit.routes import router as audit_routes
    from licensedesk.auth.routes import router as token_routes
    from licensedesk.billing.marketplace_routes import router as marketplace_routes
    from licensedesk.billing.routes import router as billing_routes
    from licensedesk.catalog.routes import router as catalog_routes
    from licensedesk.checks.routes import dev_router
    from licensedesk.checks.routes import router as check_routes
    from licensedesk.directory.routes import router as directory_routes
    from licensedesk.licensing.reclaim_routes import router as reclaim_routes
    from licensedesk.licensing.routes import router as licensing_routes
    from licensedesk.scim.routes import router as scim_routes
    from licensedesk.tenancy.routes import router as tenant_routes
    from licensedesk.web.portal import router as portal_routes
    from licensedesk.webhooks.routes import global_router as global_webhook_routes
    from licensedesk.webhooks.routes import router as webhook_routes

    @app.get("/v1/health", tags=["operations"])
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok", "version": __version__}

    # (the endpoints read the app from the request: FastAPI caches endpoints by identity for the life of
    # the process, so one that closed over `app` would keep every app ever made alive)
    @app.get("/v1/ready", tags=["operations"], responses={503: {"description": "not ready"}})
    def ready(request: Request) -> Any:
        """Readiness: the database answers and its schema is current."""
        ctx: Context = request.app.state.ctx
        try:
            with ctx.db.read() as conn:
                conn.execute(text("SELECT 1"))
            current = is_current(ctx.db)
        except Exception as exc:  # any failure to reach the database means "not ready", not a 500
            log.warning("readiness check failed: %s", exc)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        if not current:
            return JSONResponse({"status": "unavailable", "database": "schema not current"}, status_code=503)
        return {"status": "ready", "database": "ok"}

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    for router in (
        # first: an identity provider's sync sends thousands of SCIM requests in a row, and routes are
        # matched in order (its paths cannot shadow any other route's)
        scim_routes,
        tenant_routes,
        catalog_routes,
        billing_routes,
        licensing_routes,
        directory_routes,
        audit_routes,
        token_routes,
        check_routes,
        marketplace_routes,
        portal_routes,
        webhook_routes,
        global_webhook_routes,
        reclaim_routes,
    ):
        app.include_router(router)
    if dev_issuer:
        from licensedesk.web.demo_visual import router as demo_visual_routes

        app.include_router(dev_router)
        app.include_router(demo_visual_routes)
