"""The worker: processes group jobs and moves subscriptions on with time.

It runs inside the server process (a thread, woken at once when a request queues a job) and as its own
process (`licensedesk worker`). Any number of workers may share a database: jobs are claimed with
FOR UPDATE SKIP LOCKED on PostgreSQL and under BEGIN IMMEDIATE on SQLite, and leased.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from licensedesk.billing import service as billing
from licensedesk.context import Context
from licensedesk.licensing import processing, reclaim
from licensedesk.licensing import service as licensing
from licensedesk.logs import FailureStreak
from licensedesk.settings import get_settings
from licensedesk.webhooks.delivery import Dispatcher

log = logging.getLogger("licensedesk.worker")


class Worker:
    def __init__(
        self,
        ctx: Context,
        *,
        poll_seconds: float = 0.5,
        lifecycle_seconds: float = 30.0,
        lease_seconds: int = 120,
        reclaim_seconds: float | None = None,
    ) -> None:
        self.ctx = ctx
        self.poll_seconds = poll_seconds
        self.lifecycle_seconds = lifecycle_seconds
        self.lease_seconds = lease_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_lifecycle = 0.0
        self._last_optimize = 0.0
        self._last_reclaim: float | None = None  # None: not yet in this process (due at once)
        self.reclaim_seconds = (
            get_settings().reclaim_interval_seconds if reclaim_seconds is None else reclaim_seconds
        )
        # webhooks are sent by a thread of their own: a slow receiver never holds up the jobs
        self.webhooks = Dispatcher(ctx)
        self._webhooks_started = False

    def wake(self) -> None:
        self._wake.set()

    def run_pending(self) -> int:
        """Process every due job now. Answers how many were finished."""
        done = 0
        while not self._stop.is_set():
            n = processing.run_once(self.ctx, lease_seconds=self.lease_seconds)
            if n == 0:
                return done
            done += n
        return done

    def tick(self) -> int:
        done = self.run_pending()
        now = time.monotonic()
        if now - self._last_lifecycle >= self.lifecycle_seconds:
            self._last_lifecycle = now
            billing.advance_lifecycle(self.ctx)
        if self._last_reclaim is None or now - self._last_reclaim >= self.reclaim_seconds:
            self._last_reclaim = now
            reclaim.run_policies(self.ctx)
        if now - self._last_optimize >= 3600:
            self._last_optimize = now
            self.ctx.db.optimize()
        return done

    def run_forever(self) -> None:
        log.info("worker started")
        if not self._webhooks_started:
            self._webhooks_started = True
            self.webhooks.start()
        streak = FailureStreak(log, "worker loop")
        while not self._stop.is_set():
            try:
                self.tick()
                streak.succeeded()
            except Exception:  # a database outage must not kill the worker; it retries
                streak.failed()
                self._stop.wait(self.poll_seconds)
            self._wake.wait(self.poll_seconds)
            self._wake.clear()
        log.info("worker stopped")

    def start(self) -> None:
        """Run in a background thread of this process, woken whenever a job is queued here."""
        licensing.on_jobs_queued(self.wake)
        self._thread = threading.Thread(target=self.run_forever, name="licensedesk-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        licensing.off_jobs_queued(self.wake)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._webhooks_started:
            self.webhooks.stop(timeout)


class Periodic:
    """Run a function every few seconds in a background thread (and once more when stopped)."""

    def __init__(self, fn: Callable[[], object], *, every_seconds: float, name: str) -> None:
        self.fn = fn
        self.every_seconds = every_seconds
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._streak = FailureStreak(log, name)

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            self._once()

    def _once(self) -> None:
        try:
            self.fn()
            self._streak.succeeded()
        except Exception:  # a failed flush is retried on the next round; the process keeps serving
            self._streak.failed()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._once()
