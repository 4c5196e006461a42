"""Sending deliveries: the worker's side of webhooks.

A round claims due deliveries with a lease (FOR UPDATE SKIP LOCKED on PostgreSQL, under BEGIN IMMEDIATE on
SQLite), so any number of workers share the work and a crashed worker's deliveries are taken over when
the lease runs out. The HTTP requests run outside any transaction, a few at a time, with short timeouts;
the outcome of each is written by a transaction of its own, only while the lease is still ours. A failed
attempt is retried after an exponential backoff (capped) until the attempts run out: then it is failed.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from licensedesk import __version__
from licensedesk.context import Context
from licensedesk.logs import FailureStreak
from licensedesk.settings import Settings, get_settings
from licensedesk.webhooks import addresses, events, outbox, signing
from licensedesk.webhooks import repository as repo

log = logging.getLogger("licensedesk.webhooks")

BATCH = 16
PARALLEL = 8
PRUNE_SECONDS = 3600.0


@dataclass(frozen=True)
class Policy:
    """Timeouts and retries (settings: LICENSEDESK_WEBHOOK_*)."""

    timeout_seconds: float = 5.0
    max_attempts: int = 8
    backoff_seconds: float = 30.0
    backoff_max_seconds: float = 6 * 3600.0
    lease_seconds: int = 60
    allow_private_addresses: bool = False

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Policy:
        s = settings or get_settings()
        return cls(
            s.webhook_timeout_seconds,
            s.webhook_max_attempts,
            s.webhook_backoff_seconds,
            s.webhook_backoff_max_seconds,
            s.webhook_lease_seconds,
            s.webhook_allow_private_addresses,
        )

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base ... up to the cap."""
        return timedelta(seconds=min(self.backoff_max_seconds, self.backoff_seconds * 2 ** (attempts - 1)))


@dataclass
class Attempt:
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def new_client(policy: Policy) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(policy.timeout_seconds, connect=min(3.0, policy.timeout_seconds)),
        follow_redirects=False,  # a redirect is a failure: the vendor registers the final URL
        headers={"User-Agent": f"licensedesk-webhooks/{__version__}"},
        trust_env=False,
    )


def _post(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], *, allow_private: bool = False
) -> Attempt:
    target = httpx.URL(url)
    extensions: dict[str, Any] = {}
    if not allow_private:
        # to the address checked here, not to whatever the name resolves to when httpx connects
        try:
            address = addresses.resolve(target.host, target.port or (443 if target.scheme == "https" else 80))
        except addresses.AddressNotAllowed as exc:
            return Attempt(None, f"address not allowed: {exc}"[:500])
        headers = {**headers, "Host": target.netloc.decode("ascii")}
        if target.scheme == "https":
            extensions["sni_hostname"] = target.host  # the certificate is checked against the name
        target = target.copy_with(host=address)
    try:
        # streamed and closed unread: a receiver's answer body is never downloaded
        with client.stream("POST", target, content=body, headers=headers, extensions=extensions) as response:
            code = response.status_code
        return Attempt(code, None if 200 <= code < 300 else f"HTTP {code}")
    except httpx.HTTPError as exc:
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:500])


def deliver_due(ctx: Context, *, client: httpx.Client | None = None, policy: Policy | None = None) -> int:
    """One round: claim up to BATCH due deliveries, send them, record the outcomes. Answers how many
    were attempted (0: nothing was due)."""
    policy = policy or Policy.from_settings()
    token = str(uuid.uuid4())
    now = ctx.clock.now()
    with ctx.db.write() as conn:
        keys = repo.claim_due(conn, now, now + timedelta(seconds=policy.lease_seconds), token, BATCH)
    if not keys:
        return 0
    jobs = []
    with ctx.db.read() as conn:
        for tenant_id, delivery_id in keys:
            jobs.append(repo.leased(conn, tenant_id, delivery_id))
    own = client is None
    client = client or new_client(policy)
    try:
        if len(jobs) == 1:
            _attempt(ctx, client, policy, token, *jobs[0])
        else:
            with ThreadPoolExecutor(max_workers=min(PARALLEL, len(jobs))) as pool:
                list(pool.map(lambda job: _attempt(ctx, client, policy, token, *job), jobs))
    finally:
        if own:
            client.close()
    return len(jobs)


def _attempt(
    ctx: Context, client: httpx.Client, policy: Policy, token: str, row: Any, event: Any, endpoint: Any
) -> None:
    if row is None:
        return
    give_up = event is None or endpoint is None or not endpoint.enabled
    if give_up:
        result = Attempt(None, "endpoint removed or disabled")
        attempts = row.attempts  # nothing to send to: given up without an attempt
    else:
        body = events.body(event)
        started = ctx.clock.now()
        headers = {
            "Content-Type": "application/json",
            signing.HEADER: signing.sign(endpoint.secret, body, signing.unix_time(started)),
            "X-Licensedesk-Event-Id": event.id,
            "X-Licensedesk-Event-Type": event.type,
            "X-Licensedesk-Delivery-Id": row.id,
        }
        result = _post(client, endpoint.url, body, headers, allow_private=policy.allow_private_addresses)
        attempts = row.attempts + 1
        if not result.ok:
            log.info(
                "webhook delivery %s to endpoint %s failed (attempt %d): %s",
                row.id,
                row.endpoint_id,
                attempts,
                result.error,
            )
    now = ctx.clock.now()
    values: dict[str, Any] = {
        "attempts": attempts,
        "last_attempt_at": now,
        "last_response_code": result.status_code,
        "last_error": result.error,
    }
    if result.ok:
        values.update(state=repo.SUCCEEDED, next_attempt_at=None, completed_at=now)
    elif give_up or attempts >= policy.max_attempts:
        values.update(state=repo.FAILED, next_attempt_at=None, completed_at=now)
    else:
        values.update(next_attempt_at=now + policy.backoff(attempts))
    with ctx.db.write() as conn:
        repo.record_attempt(conn, row.tenant_id, row.id, token, **values)


def prune(ctx: Context, *, retention_days: float | None = None) -> tuple[int, int]:
    """Forget deliveries finished more than `retention_days` ago (LICENSEDESK_WEBHOOK_RETENTION_DAYS) and
    the events left without deliveries. Answers (deliveries, events) removed."""
    days = get_settings().webhook_retention_days if retention_days is None else retention_days
    with ctx.db.write() as conn:
        return repo.prune(conn, ctx.clock.now() - timedelta(days=days))


class Dispatcher:
    """Delivers in a thread of its own, so that a slow receiver never holds up group processing. Woken at
    once when a transaction of this process queues deliveries; otherwise it looks every `poll_seconds`
    (deliveries queued by other processes, retries coming due)."""

    def __init__(self, ctx: Context, *, poll_seconds: float = 1.0, policy: Policy | None = None) -> None:
        self.ctx = ctx
        self.poll_seconds = poll_seconds
        self.policy = policy or Policy.from_settings()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self) -> None:
        self._wake.set()

    def run_forever(self) -> None:
        client = new_client(self.policy)
        last_prune: float | None = None
        streak = FailureStreak(log, "webhook delivery round")
        try:
            while not self._stop.is_set():
                try:
                    if last_prune is None or time.monotonic() - last_prune >= PRUNE_SECONDS:
                        last_prune = time.monotonic()
                        prune(self.ctx)
                    busy = deliver_due(self.ctx, client=client, policy=self.policy) >= BATCH
                    streak.succeeded()
                except Exception:  # a database outage must not kill the dispatcher; it retries
                    streak.failed()
                    busy = False
                if busy:
                    continue
                self._wake.wait(self.poll_seconds)
                self._wake.clear()
        finally:
            client.close()

    def start(self) -> None:
        outbox.on_events_queued(self.wake)
        self._thread = threading.Thread(target=self.run_forever, name="licensedesk-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        outbox.off_events_queued(self.wake)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
