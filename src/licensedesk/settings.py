"""Configuration from the environment (LICENSEDESK_*)."""

from __future__ import annotations

from functools import lru_cache

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LICENSEDESK_", extra="ignore")

    database_url: str = "sqlite:///licensedesk.db"
    secret_key: str = ""
    marketplace_secret: str = ""
    dev_issuer: bool = False
    # Subscription lifecycle (SPEC section 1); plans may override both.
    grace_days: int = 30
    suspension_days: int = 60
    # Worker: how long a claimed job stays leased before another worker may take it over.
    job_lease_seconds: int = 120
    worker_poll_seconds: float = 0.5
    # Whether a server process also runs a job worker (`serve --no-worker` turns it off, for API
    # processes next to separate `licensedesk worker` processes).
    run_worker: bool = True
    # After startup, move everything alive into the collector's permanent generation (gc.freeze), so that
    # its full collections scan only what was made since: they paused a loaded server for ~120 ms, a few
    # times a minute (tests/reliability/test_load_while_writing.py). `serve` turns it on.
    gc_freeze: bool = False
    # The audience of admins' OIDC access tokens for the licensedesk API itself.
    api_audience: str = "api://licensedesk"
    # Where this service is reached; the dev issuer's `iss` and signed licenses' `iss` are made from it.
    public_url: str = "http://127.0.0.1:8000"
    # How often a process reads the change counters (PostgreSQL also pushes changes by NOTIFY).
    change_poll_seconds: float = 0.25
    log_level: str = "info"
    # Slow clients (src/licensedesk/server.py): a request's line and headers must arrive within this of
    # its first byte, and its body within this of its headers; otherwise the connection is closed.
    http_head_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 30.0
    # Rate limits (requests per second, and the burst allowed at once; a rate of 0 turns a limit off),
    # per server process. The run-time check: per user token, and per client address for requests that
    # must validate a token (cache misses: bad or new tokens). The API: per credential (API token or
    # signed-in admin; SCIM tokens apart), and failed sign-ins per client address.
    check_rate_per_token: float = 20.0
    check_burst_per_token: float = 100.0
    check_rate_per_address: float = 200.0
    check_burst_per_address: float = 1000.0
    api_rate_per_credential: float = 100.0
    api_burst_per_credential: float = 1000.0
    # SCIM tokens (an identity provider's provisioning, which creates users one request each): their own,
    # higher limit, so a full sync runs at the rate the service sustains (P5: >= 300 users/s)
    scim_rate_per_credential: float = 1000.0
    scim_burst_per_credential: float = 10000.0
    auth_failures_per_address: float = 1.0
    auth_failures_burst: float = 20.0
    # The admin portal's OIDC client at tenants' identity providers (authorization code + PKCE); the
    # portal's session cookies are signed with a key derived from secret_key, or kept in the database.
    portal_client_id: str = "licensedesk-portal"
    portal_client_secret: str = ""
    # Outgoing webhooks: per-request timeout, attempts before a delivery is failed, and the backoff
    # between attempts (base, doubling, capped).
    webhook_timeout_seconds: float = 5.0
    webhook_max_attempts: int = 8
    webhook_backoff_seconds: float = 30.0
    webhook_backoff_max_seconds: float = 6 * 3600.0
    webhook_lease_seconds: int = 60
    # Webhooks go to public addresses only (no loopback, private, link-local...); 1 allows private ones
    webhook_allow_private_addresses: bool = False
    # Finished deliveries (and their events) are kept this long in the delivery log.
    webhook_retention_days: float = 30.0
    # How often the worker applies the tenants' reclaim policies.
    reclaim_interval_seconds: float = 3600.0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
