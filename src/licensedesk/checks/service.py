"""The run-time check: which plans of a product does the user of this token hold? (SPEC section 3)

The hot path touches no database when it has seen the token and the answer before: validated tokens are
cached until they expire, answers until the tenant's data changes (db/changes.py tells every process within
a second, and this process at once). Usage is recorded in memory and written in batches, at most once a
minute per user and plan.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from licensedesk import metrics
from licensedesk.auth.oidc import ALGORITHMS, LEEWAY_SECONDS, InvalidToken, JwksCache
from licensedesk.checks import keys as signing
from licensedesk.checks import repository as repo
from licensedesk.context import Context
from licensedesk.db.changes import ChangeFeed
from licensedesk.errors import NotFound, ValidationFailed
from licensedesk.ratelimit import RateLimited, RateLimiter

log = logging.getLogger("licensedesk.checks")

# ServicePlanState of the Power BI visuals API
INACTIVE, ACTIVE, WARNING, SUSPENDED, UNKNOWN = 0, 1, 2, 3, 4
STATE_NUMBER = {
    "Active": ACTIVE,
    "Warning": WARNING,
    "Suspended": SUSPENDED,
    "Error": INACTIVE,
    "Disabled": INACTIVE,
}
USABLE = ("Active", "Warning")
DEV_ISSUER_PATH = "/dev-issuer/"
# The check is called from visuals in other origins (Power BI's sandboxed iframes) with a bearer token and
# no cookies, so any origin may read it; the ETag must be readable for If-None-Match revalidation.
CORS_HEADERS = (
    (b"access-control-allow-origin", b"*"),
    (b"access-control-expose-headers", b"ETag, X-Request-Id"),
)


@dataclass(frozen=True)
class Identity:
    """Who a validated user token names."""

    tenant_id: str
    oid: str | None
    names: tuple[str, ...]  # preferred_username, upn, email (as given)
    exp: float


@dataclass(frozen=True)
class Answer:
    body: bytes
    etag: str
    plans: tuple[tuple[str, str, int], ...]  # (plan id, spIdentifier, state)
    user_id: str | None
    # the HTTP headers of a 200 and of a 304 answer, made once (the hot path only adds X-Request-Id)
    headers_200: tuple[tuple[bytes, bytes], ...] = ()
    headers_304: tuple[tuple[bytes, bytes], ...] = ()


def token_key(token: str, audience: str) -> bytes:
    """The cache key of a token: a digest, so that many cached tokens cost little memory."""
    return hashlib.blake2b(f"{audience}\0{token}".encode(), digest_size=16).digest()


FLIGHT_WAIT_SECONDS = 5.0
# While one request reads a user's changed answer, the others asking for it get the previous one, if it was
# current until less than this long ago: well within SPEC's second for a change to reach the check, and no
# queue behind the read (tests/reliability/test_load_while_writing.py: the check's p99 under writes).
STALE_SECONDS = 0.25


class _Flight:
    """One computation of an answer that concurrent misses of the same answer wait for."""

    __slots__ = ("answer", "done", "error", "started")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: Answer | None = None
        self.error: Exception | None = None
        self.started = False


@dataclass(frozen=True)
class Lead:
    """A request that is to read a changed answer for everyone asking for it (Checker.read)."""

    flight: _Flight
    identity: Identity
    product_id: str
    key: Any
    version: tuple[int, int]


class BoundedCache:
    """A dict that forgets its oldest entries past `size` (thread-safe enough: one lock)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        return self._data.get(key)

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._data[key] = value
            if len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class UsageRecorder:
    """Last use per (tenant, plan, user), kept in memory and written in batches."""

    def __init__(self, ctx: Context, *, every_seconds: float = 60.0) -> None:
        self.ctx = ctx
        self.every_seconds = every_seconds
        self._pending: dict[tuple[str, str, str], datetime] = {}
        self._recorded: BoundedCache = BoundedCache(1_000_000)
        self._lock = threading.Lock()

    def saw(self, tenant_id: str, plan_id: str, user_id: str) -> None:
        key = (tenant_id, plan_id, user_id)
        now = time.monotonic()
        last = self._recorded.get(key)
        if last is not None and now - last < self.every_seconds:
            return
        self._recorded.put(key, now)
        with self._lock:
            self._pending[key] = self.ctx.clock.now()

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            with self.ctx.db.write() as conn:
                repo.record_usage(conn, [(t, p, u, at) for (t, p, u), at in pending.items()])
        return len(pending)


class Checker:
    """Answers run-time checks for every product, with caches and change tracking."""

    def __init__(
        self,
        ctx: Context,
        feed: ChangeFeed,
        *,
        public_url: str,
        dev_issuer: bool,
        jwks: JwksCache | None = None,
        keys: signing.KeyStore | None = None,
        license_ttl: timedelta = timedelta(hours=1),
        token_limiter: RateLimiter | None = None,
        address_limiter: RateLimiter | None = None,
    ) -> None:
        self.ctx = ctx
        # per user token (every check), and per client address (checks that must validate a token)
        self.token_limiter = token_limiter if token_limiter is not None else RateLimiter(0, 1)
        self.address_limiter = address_limiter if address_limiter is not None else RateLimiter(0, 1)
        self.feed = feed
        self.public_url = public_url.rstrip("/")
        self.dev_issuer = dev_issuer
        self.jwks = jwks or JwksCache()
        self.keys = keys or signing.KeyStore(ctx)
        self.license_ttl = license_ttl
        self.tokens = BoundedCache(200_000)
        self.answers = BoundedCache(300_000)
        self._flights: dict[Any, _Flight] = {}
        self._flights_lock = threading.Lock()
        self.usage = UsageRecorder(ctx)
        self._products: dict[str, tuple[float, Any, dict[str, str]]] = {}
        self._issuers: dict[str, list[Any]] = {}
        self._issuers_loaded = 0.0
        self._check_counters: dict[tuple[str, bool], Any] = {}

    # ------------------------------------------------------------ catalog and issuers

    def product(self, product_id: str) -> tuple[Any, dict[str, str]]:
        cached = self._products.get(product_id)
        if cached is not None and time.monotonic() - cached[0] < 30:
            return cached[1], cached[2]
        with self.ctx.db.read() as conn:
            row = repo.product(conn, product_id)
            plan_map = repo.product_plans(conn, product_id) if row else {}
        if row is None:
            raise NotFound("product", product_id)
        self._products[product_id] = (time.monotonic(), row, plan_map)
        return row, plan_map

    def dev_issuer_of(self, tenant_slug: str) -> str:
        return f"{self.public_url}{DEV_ISSUER_PATH}{tenant_slug}"

    def _tenants_of_issuer(self, issuer: str) -> list[Any]:
        marker = issuer.rfind(DEV_ISSUER_PATH)
        if self.dev_issuer and marker >= 0 and issuer.startswith(("http://", "https://")):
            # the dev issuer is known by its path; its keys are in the database, whatever URL minted it
            ref = issuer[marker + len(DEV_ISSUER_PATH) :]
            with self.ctx.db.read() as conn:
                row = repo.tenant_by_ref(conn, ref)
            return [("dev", row)] if row is not None and row.slug == ref else []
        found = self._issuers.get(issuer)
        if found is None or time.monotonic() - self._issuers_loaded > 30:
            # an unknown issuer reloads the map, at most once a second
            if found is None and time.monotonic() - self._issuers_loaded < 1:
                return []
            issuers: dict[str, list[Any]] = {}
            with self.ctx.db.read() as conn:
                for row in repo.tenants_with_issuers(conn):
                    issuers.setdefault(row.issuer, []).append(row)
            self._issuers = issuers
            self._issuers_loaded = time.monotonic()
            found = issuers.get(issuer)
        return [("oidc", row) for row in (found or [])]

    # ------------------------------------------------------------ tokens

    def identify(self, token: str, audience: str) -> Identity:
        """Validate a user access token for a product's audience (cached until it expires)."""
        cached: Identity | None = self.tokens.get(token_key(token, audience))
        if cached is not None and cached.exp + LEEWAY_SECONDS > time.time():
            return cached
        identity = self._validate(token, audience)
        self.tokens.put(token_key(token, audience), identity)
        return identity

    def identify_limited(self, token: str, audience: str) -> Identity:
        """`identify`, then one request from the token's rate limit (raises RateLimited when over)."""
        identity = self.identify(token, audience)
        wait = self.token_limiter.hit(token_key(token, audience))
        if wait:
            raise RateLimited(wait, "too many checks with this token; try again later")
        return identity

    def _validate(self, token: str, audience: str) -> Identity:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken("signing algorithm not accepted")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str):
            raise InvalidToken("no issuer")
        for kind, tenant in self._tenants_of_issuer(issuer):
            if kind == "dev":
                key = self.keys.verification_key(signing.DEV_ISSUER, tenant.id, str(header.get("kid")))
                if key is None:
                    raise InvalidToken("unknown signing key")
            else:
                if not tenant.jwks_uri:
                    continue
                key = self.jwks.key(tenant.jwks_uri, header.get("kid")).key
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[header["alg"]],
                    audience=audience,
                    issuer=issuer,
                    leeway=LEEWAY_SECONDS,
                    options={"require": ["exp", "iss", "aud"]},
                )
            except jwt.PyJWTError as exc:
                raise InvalidToken(str(exc)) from exc
            tid = claims.get("tid")
            if (
                kind == "oidc"
                and tenant.external_tenant_id
                and tid is not None
                and tid != tenant.external_tenant_id
            ):
                continue
            names = tuple(
                str(claims[c])
                for c in ("preferred_username", "upn", "email")
                if isinstance(claims.get(c), str)
            )
            oid = claims.get("oid")
            return Identity(tenant.id, str(oid) if oid else None, names, float(claims["exp"]))
        raise InvalidToken("no tenant trusts this issuer")

    # ------------------------------------------------------------ answers

    def answer(self, identity: Identity, product_id: str) -> Answer:
        key = (identity.tenant_id, product_id, identity.oid, identity.names)
        version = self.feed.version(identity.tenant_id)
        cached = self.answers.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        # One computation per answer and version: every write of a tenant makes its cached answers stale
        # at once, and a user's visuals (or a load test's connections) then all miss together. The first
        # miss reads the database; the others, asking for the same version, wait for its answer (found by
        # tests/reliability/test_load_while_writing.py: 32 connections re-reading one answer after each
        # write starved the check, p99 ~300 ms).
        flight, leader = self._flight(key, version, now=True)
        if not leader:
            if cached is not None and self.feed.superseded_within(
                identity.tenant_id, cached[0], STALE_SECONDS
            ):
                return cached[1]  # the previous answer while the leader reads the new one
            if not flight.started:
                # its reader (a Lead) waits for a thread, maybe behind this one: never queue behind it
                return self._compute(identity, product_id)
            if flight.done.wait(FLIGHT_WAIT_SECONDS) and flight.answer is not None:
                return flight.answer
            if flight.error is not None:
                raise flight.error
            return self._compute(identity, product_id)  # the first is slow: ask for ourselves
        return self._lead(flight, identity, product_id, key, version)

    def _flight(self, key: Any, version: tuple[int, int], *, now: bool) -> tuple[_Flight, bool]:
        """The computation of (answer, version) in progress, and whether the caller must run it (`now`:
        in this thread, at once; otherwise a Lead's thread starts it later)."""
        with self._flights_lock:
            flight = self._flights.get((key, version))
            if flight is not None:
                return flight, False
            flight = self._flights[(key, version)] = _Flight()
            flight.started = now
            return flight, True

    def _lead(
        self, flight: _Flight, identity: Identity, product_id: str, key: Any, version: tuple[int, int]
    ) -> Answer:
        flight.started = True
        try:
            answer = self._compute(identity, product_id)
            self.answers.put(key, (version, answer))
            flight.answer = answer
            return answer
        except Exception as exc:
            flight.error = exc
            raise
        finally:
            with self._flights_lock:
                self._flights.pop((key, version), None)
            flight.done.set()

    def read(self, lead: Lead) -> Answer:
        """Read the changed answer that `cached_service_plans` handed this request (in a thread)."""
        answer = self._lead(lead.flight, lead.identity, lead.product_id, lead.key, lead.version)
        self._served(lead.identity, lead.product_id, answer)
        return answer

    def _compute(self, identity: Identity, product_id: str) -> Answer:
        _product, plan_map = self.product(product_id)
        with self.ctx.db.read() as conn:
            user = repo.find_user(conn, identity.tenant_id, identity.oid, identity.names)
            states = repo.user_license_states(conn, identity.tenant_id, user.id) if user is not None else []
        held = sorted(
            (
                (plan_id, plan_map[plan_id], STATE_NUMBER[state])
                for plan_id, state in states
                if plan_id in plan_map
            ),
            key=lambda p: p[1],
        )
        return make_answer(tuple(held), user.id if user is not None else None)

    def service_plans(self, token: str, product_id: str) -> Answer:
        """The LicenseInfoResult for the token's user (raises InvalidToken, NotFound, RateLimited)."""
        product, _plans = self.product(product_id)
        identity = self.identify_limited(token, product.audience)
        answer = self.answer(identity, product_id)
        self._served(identity, product_id, answer)
        return answer

    def cached_service_plans(self, token: str, product_id: str) -> Answer | Lead | None:
        """The answer if the token and the answer are cached and current, None otherwise; no I/O.

        When the tenant's data changed since the answer was cached, the first such request is handed a
        `Lead`: it reads the new answer (`read`, in a thread) and so sees a change made just before it.
        The requests that arrive while it reads get the previous answer, if it was current until less
        than STALE_SECONDS ago, without leaving the event loop (tests/reliability/
        test_load_while_writing.py: the misses that went to threads after every write cost the check's
        p99 under writes)."""
        cached_product = self._products.get(product_id)
        if cached_product is None:
            return None
        key = token_key(token, cached_product[1].audience)
        identity: Identity | None = self.tokens.get(key)
        if identity is None or identity.exp + LEEWAY_SECONDS <= time.time():
            return None
        answer_key = (identity.tenant_id, product_id, identity.oid, identity.names)
        cached = self.answers.get(answer_key)
        if cached is None:
            return None  # the slow path answers it, and counts it against the token's limit
        version = self.feed.version(identity.tenant_id)
        lead: Lead | None = None
        if cached[0] != version:
            if not self.feed.superseded_within(identity.tenant_id, cached[0], STALE_SECONDS):
                return None  # too old to serve meanwhile: the slow path reads it, or waits for the read
            flight, leader = self._flight(answer_key, version, now=False)
            if leader:
                lead = Lead(flight, identity, product_id, answer_key, version)
        wait = self.token_limiter.hit(key)
        if wait:
            if lead is not None:
                self._abandon(lead.flight, answer_key, version)
            raise RateLimited(wait, "too many checks with this token; try again later")
        if lead is not None:
            return lead
        answer: Answer = cached[1]
        self._served(identity, product_id, answer)
        return answer

    def abandon(self, lead: Lead) -> None:
        """The request holding `lead` ended without reading it (cancelled before its thread ran): free the
        read, so the requests that wait for it compute for themselves rather than wait it out."""
        if not lead.flight.started:
            self._abandon(lead.flight, lead.key, lead.version)

    def _abandon(self, flight: _Flight, key: Any, version: tuple[int, int]) -> None:
        """Give up a computation before it started: its waiters compute for themselves."""
        with self._flights_lock:
            self._flights.pop((key, version), None)
        flight.done.set()

    def _served(self, identity: Identity, product_id: str, answer: Answer) -> None:
        if answer.user_id is not None:
            for plan_id, _sp, state in answer.plans:
                if state in (ACTIVE, WARNING):
                    self.usage.saw(identity.tenant_id, plan_id, answer.user_id)
        outcome = (product_id, bool(answer.plans))
        counter = self._check_counters.get(outcome)
        if counter is None:
            counter = metrics.checks_total.labels(product_id, "licensed" if answer.plans else "unlicensed")
            self._check_counters[outcome] = counter
        counter.inc()

    def batch(self, tenant_id: str, product_id: str, users: list[str]) -> list[dict[str, Any]]:
        """The plans of many users (by userPrincipalName or externalId) for the vendor's servers."""
        if not 1 <= len(users) <= 1000:
            raise ValidationFailed("users must name 1 to 1000 users", field="users")
        self.product(product_id)
        results = []
        for user in users:
            identity = Identity(
                tenant_id, user if "@" not in user else None, (user,) if "@" in user else (), 0.0
            )
            answer = self.answer(identity, product_id)
            results.append(
                {"user": user, "plans": [{"spIdentifier": sp, "state": st} for _p, sp, st in answer.plans]}
            )
        return results

    def signed_license(self, token: str, product_id: str) -> str:
        """The same answer as a compact JWS signed with the service's Ed25519 key (for offline use)."""
        product, _plans = self.product(product_id)
        identity = self.identify_limited(token, product.audience)
        answer = self.answer(identity, product_id)
        key = self.keys.current(signing.LICENSE)
        iat = int(time.time())  # token times are wall-clock times, whatever clock the rules run on
        claims = {
            "iss": self.public_url,
            "sub": answer.user_id or "",
            "tid": identity.tenant_id,
            "aud": product.audience,
            "plans": [{"spIdentifier": sp, "state": st} for _p, sp, st in answer.plans],
            "iat": iat,
            "exp": iat + int(self.license_ttl.total_seconds()),
        }
        return jwt.encode(claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})

    # ------------------------------------------------------------ the dev issuer

    def mint_dev_token(
        self, tenant_ref: str, upn: str, product_id: str, *, lifetime: timedelta = timedelta(hours=1)
    ) -> str:
        """A user access token from the dev issuer (demo and tests only)."""
        product, _plans = self.product(product_id)
        with self.ctx.db.read() as conn:
            tenant = repo.tenant_by_ref(conn, tenant_ref)
            if tenant is None:
                raise NotFound("tenant", tenant_ref)
            user = repo.find_user(conn, tenant.id, None, (upn,))
        oid = None
        if user is not None:
            from licensedesk.directory import service as directory

            oid = directory.get_user(self.ctx, tenant.id, user.id).external_id
        key = self.keys.current(signing.DEV_ISSUER, tenant.id)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.dev_issuer_of(tenant.slug),
            "aud": product.audience,
            "sub": oid or upn.lower(),
            "preferred_username": upn,
            "upn": upn,
            "tid": tenant.external_tenant_id or tenant.id,
            "iat": now,
            "nbf": now,
            "exp": now + int(lifetime.total_seconds()),
        }
        if oid:
            claims["oid"] = oid
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})


# Answers are few shapes (most users hold the same plans in the same states): their bytes are made once
# and shared, so a cache of many users' answers costs little memory.
_shapes: dict[tuple[tuple[str, str, int], ...], tuple[bytes, str, Any, Any]] = {}
_shapes_lock = threading.Lock()


def _shape(plans: tuple[tuple[str, str, int], ...]) -> tuple[bytes, str, Any, Any]:
    shape = _shapes.get(plans)
    if shape is not None:
        return shape
    body = json.dumps(
        {
            "plans": [{"spIdentifier": sp, "state": state} for _plan, sp, state in plans],
            "isLicenseUnsupportedEnv": False,
            "isLicenseInfoAvailable": True,
        },
        separators=(",", ":"),
    ).encode()
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    common = (
        (b"etag", etag.encode()),
        (b"cache-control", b"private, no-cache"),
        (b"vary", b"Authorization"),
        *CORS_HEADERS,
    )
    headers_200 = (
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *common,
    )
    headers_304 = ((b"content-length", b"0"), *common)
    shape = (body, etag, headers_200, headers_304)
    with _shapes_lock:
        if len(_shapes) > 100_000:  # a safety valve; real products have a handful of shapes
            _shapes.clear()
        _shapes[plans] = shape
    return shape


def make_answer(plans: tuple[tuple[str, str, int], ...], user_id: str | None) -> Answer:
    body, etag, headers_200, headers_304 = _shape(plans)
    return Answer(body, etag, plans, user_id, headers_200=headers_200, headers_304=headers_304)


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    bare = etag.strip('"')
    return any(tag.strip().removeprefix("W/").strip('"') == bare for tag in if_none_match.split(","))
