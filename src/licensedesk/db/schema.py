"""The schema (SQLAlchemy Core). Every tenant-owned table's primary key starts with `tenant_id`,
and no query joins rows of two tenants, so the schema can be distributed by tenant (SPEC section 8).

Ids are UUID strings; times are naive UTC (see clock.py). Search terms use the C collation on PostgreSQL
so that prefix ranges compare bytes, exactly as SQLite does.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = String(36)
SearchTerm = String(400).with_variant(String(400, collation="C"), "postgresql")


CLAIM_KEY_LENGTH = 36  # a user id: the one whose place in claim order the holder has


def _id(name: str, **kw: object) -> Column:
    return Column(name, ID, nullable=False, **kw)  # type: ignore[arg-type]


def _at(name: str, nullable: bool = False) -> Column:
    return Column(name, DateTime(), nullable=nullable)


# ---------------------------------------------------------------- tenants and catalog

tenants = Table(
    "tenants",
    metadata,
    Column("id", ID, primary_key=True),
    Column("slug", String(63), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("external_tenant_id", String(200), nullable=True, unique=True),
    Column("issuer", String(500), nullable=True),
    Column("jwks_uri", String(500), nullable=True),
    _at("created_at"),
    _at("updated_at"),
    # an index, not a constraint: SQLite adds an index in place, but a constraint by rebuilding the table
    Index("uq_tenants_issuer", "issuer", unique=True),
)

products = Table(
    "products",
    metadata,
    Column("id", String(63), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("audience", String(500), nullable=False, unique=True),
    _at("created_at"),
)

plans = Table(
    "plans",
    metadata,
    Column("id", String(63), primary_key=True),
    Column("product_id", String(63), nullable=False),
    Column("name", String(200), nullable=False),
    Column("sp_identifier", String(200), nullable=False),
    Column("trial_days", Integer, nullable=False, server_default="0"),
    Column("grace_days", Integer, nullable=True),
    Column("suspension_days", Integer, nullable=True),
    _at("created_at"),
    ForeignKeyConstraint(["product_id"], ["products.id"]),
    UniqueConstraint("product_id", "sp_identifier"),
)

# ---------------------------------------------------------------- directory

users = Table(
    "users",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    Column("user_principal_name", String(320), nullable=False),
    Column("upn_key", SearchTerm, nullable=False),  # lower-cased, for uniqueness and ordering
    Column("display_name", String(256), nullable=False, server_default=""),
    Column("external_id", String(200), nullable=True),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    # when the user was last made active: a reactivated user's claims count from then (they wait for a
    # free seat rather than take one from someone who kept working)
    _at("activated_at"),
    _at("created_at"),
    _at("updated_at"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
    UniqueConstraint("tenant_id", "upn_key"),
    UniqueConstraint("tenant_id", "external_id"),
)


groups = Table(
    "groups",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    Column("display_name", String(256), nullable=False),
    Column("name_key", SearchTerm, nullable=False),
    Column("description", String(1024), nullable=False, server_default=""),
    Column("external_id", String(200), nullable=True),
    _at("created_at"),
    _at("updated_at"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
    UniqueConstraint("tenant_id", "external_id"),
    Index("ix_groups_name", "tenant_id", "name_key", "id"),
)

# Direct members that are users.
group_user_members = Table(
    "group_user_members",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("group_id", primary_key=True),
    _id("user_id", primary_key=True),
    _at("added_at"),
    ForeignKeyConstraint(["tenant_id", "group_id"], ["groups.tenant_id", "groups.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    Index("ix_group_user_members_user", "tenant_id", "user_id", "group_id"),
)

# Direct members that are groups (nesting).
group_group_members = Table(
    "group_group_members",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("group_id", primary_key=True),
    _id("member_group_id", primary_key=True),
    _at("added_at"),
    ForeignKeyConstraint(["tenant_id", "group_id"], ["groups.tenant_id", "groups.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(
        ["tenant_id", "member_group_id"], ["groups.tenant_id", "groups.id"], ondelete="CASCADE"
    ),
    Index("ix_group_group_members_member", "tenant_id", "member_group_id", "group_id"),
)

# Transitive closure of group nesting, including each group with itself. `joined_at` is when the
# descendant became reachable from the ancestor: the minimum over paths of the latest edge on the path.
group_closure = Table(
    "group_closure",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("ancestor_id", primary_key=True),
    _id("descendant_id", primary_key=True),
    _at("joined_at"),
    Index("ix_group_closure_descendant", "tenant_id", "descendant_id", "ancestor_id"),
)

# Prefix-search terms for users and groups (the upn, the whole display name, each word of it).
directory_terms = Table(
    "directory_terms",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("term", SearchTerm, primary_key=True),
    Column("rank", Integer, primary_key=True),  # 0: a whole name or upn; 1: one word of a name
    Column("kind", String(8), primary_key=True),  # 'user' | 'group'
    _id("object_id", primary_key=True),
    # object first: with kind first, a search of one kind could be planned as a walk of every object of it
    Index("ix_directory_terms_object", "tenant_id", "object_id", "kind", "term", "rank"),
    # searches of one kind (the users browser, the groups browser) walk this one in order
    Index("ix_directory_terms_kind", "tenant_id", "kind", "term", "rank", "object_id"),
)

# The SCIM attributes of a user or group that licensedesk does not model itself (name, emails, ...), kept
# as the identity provider sent them (JSON text) so that a SCIM read returns what was written.
scim_user_attributes = Table(
    "scim_user_attributes",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("user_id", primary_key=True),
    Column("data", Text, nullable=False),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
)

scim_group_attributes = Table(
    "scim_group_attributes",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("group_id", primary_key=True),
    Column("data", Text, nullable=False),
    ForeignKeyConstraint(["tenant_id", "group_id"], ["groups.tenant_id", "groups.id"], ondelete="CASCADE"),
)

# ---------------------------------------------------------------- billing

subscriptions = Table(
    "subscriptions",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    Column("plan_id", String(63), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("trial", Boolean, nullable=False, server_default=text("false")),
    _at("trial_ends_at", nullable=True),
    _at("term_started_at", nullable=True),
    _at("term_ends_at", nullable=True),
    Column("auto_renew", Boolean, nullable=False, server_default=text("false")),
    Column("source", String(16), nullable=False, server_default="api"),
    Column("external_id", String(200), nullable=True),
    _at("status_changed_at"),
    _at("created_at"),
    _at("updated_at"),
    # the timeStamp of the last marketplace event applied: older ones arriving late are ignored
    _at("last_event_at", nullable=True),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
    ForeignKeyConstraint(["plan_id"], ["plans.id"]),
    CheckConstraint("quantity >= 1", name="quantity_positive"),
    UniqueConstraint("tenant_id", "external_id"),
    Index("ix_subscriptions_plan", "tenant_id", "plan_id"),
    Index("ix_subscriptions_status", "status", "term_ends_at"),
)

# Every marketplace event received, with what became of it (idempotency by the event's id). Events that
# name no known tenant are kept under SYSTEM_TENANT.
marketplace_events = Table(
    "marketplace_events",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("subscription_external_id", String(200), nullable=False),
    Column("action", String(32), nullable=False),
    _at("time_stamp"),
    _at("received_at"),
    Column("outcome", String(16), nullable=False),  # applied | stale
    Column("detail", Text, nullable=True),
    Column("body", Text, nullable=False),
    Index("uq_marketplace_events_id", "id", unique=True),
)

# ---------------------------------------------------------------- licensing

direct_assignments = Table(
    "direct_assignments",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("plan_id", String(63), primary_key=True),
    _id("user_id", primary_key=True),
    _at("assigned_at"),
    # the tie-break among equal claim times: NULL is the user's own id; a reassigned assignment carries the
    # key of the user it came from, so `to` takes `from`'s place in claim order (SPEC section 1); '' comes
    # first (a user named in an assign that also names a group they are in, see licensing.assign_in)
    Column("claim_key", String(CLAIM_KEY_LENGTH), nullable=True),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    ForeignKeyConstraint(["plan_id"], ["plans.id"]),
    Index("ix_direct_assignments_user", "tenant_id", "user_id", "plan_id"),
)

# A plan assigned to a group, with the group's license status for that plan.
group_assignments = Table(
    "group_assignments",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("plan_id", String(63), primary_key=True),
    _id("group_id", primary_key=True),
    _at("assigned_at"),
    Column("processing_state", String(16), nullable=False),  # Queued | InProgress | Complete
    Column("members_total", Integer, nullable=False, server_default="0"),
    Column("members_seated", Integer, nullable=False, server_default="0"),
    Column("members_with_errors", Integer, nullable=False, server_default="0"),
    _at("last_processed_at", nullable=True),
    ForeignKeyConstraint(["tenant_id", "group_id"], ["groups.tenant_id", "groups.id"]),
    ForeignKeyConstraint(["plan_id"], ["plans.id"]),
    Index("ix_group_assignments_group", "tenant_id", "group_id", "plan_id"),
)

# The derived license of one user for one plan (SPEC: License). `direct` / `via_group` say which kinds of
# source exist; `active` mirrors the user's flag so that seating needs no join.
licenses = Table(
    "licenses",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("plan_id", String(63), primary_key=True),
    _id("user_id", primary_key=True),
    _at("claim_at"),
    # claim order is (claim_at, claim_key, user_id); claim_key is the user's id unless a reassignment
    # carried another user's (see direct_assignments)
    Column("claim_key", String(CLAIM_KEY_LENGTH), nullable=False),
    Column("direct", Boolean, nullable=False),
    Column("via_group", Boolean, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("state", String(16), nullable=False),  # Active | Warning | Suspended | Error | Disabled
    _at("created_at"),
    _at("updated_at"),
    _at("last_used_at", nullable=True),
    ForeignKeyConstraint(["tenant_id", "user_id"], ["users.tenant_id", "users.id"], ondelete="CASCADE"),
    Index("ix_licenses_order", "tenant_id", "plan_id", "active", "claim_at", "claim_key", "user_id"),
    Index("ix_licenses_state", "tenant_id", "plan_id", "state", "claim_at", "user_id"),
    Index("ix_licenses_user", "tenant_id", "user_id", "plan_id"),
)

# The pool of one plan in one tenant and its maintained counters (never counted on read).
pools = Table(
    "pools",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("plan_id", String(63), primary_key=True),
    Column("enabled", Integer, nullable=False, server_default="0"),
    Column("warning", Integer, nullable=False, server_default="0"),
    Column("suspended", Integer, nullable=False, server_default="0"),
    Column("seated_active", Integer, nullable=False, server_default="0"),
    Column("seated_warning", Integer, nullable=False, server_default="0"),
    Column("seated_suspended", Integer, nullable=False, server_default="0"),
    Column("waiting", Integer, nullable=False, server_default="0"),
    Column("disabled", Integer, nullable=False, server_default="0"),
    Column("reserved", Integer, nullable=False, server_default="0"),
    Column("has_subscriptions", Boolean, nullable=False, server_default=text("false")),
    _at("updated_at"),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
    ForeignKeyConstraint(["plan_id"], ["plans.id"]),
)

# Seats promised to accepted, not yet processed group work. They rank at `accepted_at` in claim order.
seat_reservations = Table(
    "seat_reservations",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    _id("job_id"),
    Column("plan_id", String(63), nullable=False),
    _at("accepted_at"),
    Column("seats", Integer, nullable=False),
    Index("ix_seat_reservations_plan", "tenant_id", "plan_id", "accepted_at"),
    Index("ix_seat_reservations_job", "tenant_id", "job_id"),
)

# Scratch rows of one recomputation (a transaction writes, uses and deletes its own batch).
work_scope = Table(
    "work_scope",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("batch_id", primary_key=True),
    _id("user_id", primary_key=True),
)

work_desired = Table(
    "work_desired",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("batch_id", primary_key=True),
    _id("user_id", primary_key=True),
    _at("claim_at"),
    Column("claim_key", String(CLAIM_KEY_LENGTH), nullable=False),
    Column("direct", Boolean, nullable=False),
    Column("via_group", Boolean, nullable=False),
    Column("active", Boolean, nullable=False),
)

work_seat_changes = Table(
    "work_seat_changes",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("batch_id", primary_key=True),
    _id("user_id", primary_key=True),
    Column("old_state", String(16), nullable=True),  # NULL: the license is new
    Column("new_state", String(16), nullable=True),  # NULL: the license is gone
)

# ---------------------------------------------------------------- jobs

jobs = Table(
    "jobs",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    # group_plan: members of target (group) for plan; group_members: members of target for every plan;
    # users: the users listed in job_users, whose membership under target (a group) changed.
    Column("kind", String(16), nullable=False),
    Column("target_id", String(63), nullable=False),
    Column("plan_id", String(63), nullable=False, server_default=""),
    Column("state", String(16), nullable=False),  # queued | running
    Column("attempts", Integer, nullable=False, server_default="0"),
    _at("run_after"),
    _at("lease_until", nullable=True),
    Column("lease_token", String(36), nullable=True),
    Column("last_error", Text, nullable=True),
    _at("created_at"),
    Index("ix_jobs_due", "state", "run_after"),
    Index(
        "uq_jobs_pending",
        "tenant_id",
        "kind",
        "target_id",
        "plan_id",
        unique=True,
        sqlite_where=text("state = 'queued' AND kind != 'users'"),
        postgresql_where=text("state = 'queued' AND kind != 'users'"),
    ),
)

job_users = Table(
    "job_users",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("job_id", primary_key=True),
    _id("user_id", primary_key=True),
)

# ---------------------------------------------------------------- audit

audit_events = Table(
    "audit_events",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    _at("at"),
    Column("actor_type", String(16), nullable=False),
    Column("actor_id", String(200), nullable=True),
    Column("actor_name", String(320), nullable=True),
    Column("action", String(64), nullable=False),
    Column("target_type", String(16), nullable=True),
    Column("target_id", String(200), nullable=True),
    Column("target_name", String(320), nullable=True),
    Column("plan_id", String(63), nullable=True),
    Column("details", Text, nullable=True),  # JSON text
    Column("request_id", String(200), nullable=True),
    Index("ix_audit_events_at", "tenant_id", "at", "id"),
    # ends with (at, id), the log's order, so that SQLite reads a target's page from it rather than walking
    # the whole log by time (seconds at a million users); cheap, as targets are inserted all over it anyway
    # (the same on actor, action and plan, one value for a whole fan-out, would make their inserts random)
    Index("ix_audit_events_target", "tenant_id", "target_id", "at", "id"),
    Index("ix_audit_events_actor", "tenant_id", "actor_id", "at"),
    Index("ix_audit_events_action", "tenant_id", "action", "at"),
    Index("ix_audit_events_plan", "tenant_id", "plan_id", "at"),
)

# ---------------------------------------------------------------- authentication and requests

# API tokens. Operator tokens (all tenants) are kept under SYSTEM_TENANT. Only the SHA-256 of the secret
# is stored.
api_tokens = Table(
    "api_tokens",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    Column("name", String(200), nullable=False),
    Column("role", String(32), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_by", String(320), nullable=True),
    _at("created_at"),
    _at("last_used_at", nullable=True),
    _at("revoked_at", nullable=True),
)

# Answers of mutating POSTs by Idempotency-Key (kept 24 h). `key_hash` covers the caller and the key.
idempotency_records = Table(
    "idempotency_records",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("key_hash", String(64), primary_key=True),
    Column("method", String(8), nullable=False),
    Column("path", String(2000), nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("status", Integer, nullable=False),  # 0 while the first request is still running
    Column("content_type", String(100), nullable=True),
    Column("body", Text, nullable=True),
    _at("created_at"),
    Index("ix_idempotency_records_created", "created_at"),
)

# A counter per tenant, bumped by every transaction that changes anything of the tenant (it writes an audit
# event): processes that cache run-time check answers learn of changes by it within a second.
change_counters = Table(
    "change_counters",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("version", BigInteger, nullable=False, server_default="0"),
)

# Signing keys kept in the database, so every process sharing it signs and verifies with the same keys:
# the dev issuer's (RS256, per tenant) and the service's license-signing key (Ed25519). A retired key's
# public half stays published until `publish_until` (when the last token it signed has expired).
signing_keys = Table(
    "signing_keys",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("id", String(64), primary_key=True),  # the JWK kid
    Column("purpose", String(16), nullable=False),  # dev-issuer | license
    Column("alg", String(16), nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("public_jwk", Text, nullable=False),
    _at("created_at"),
    _at("retired_at", nullable=True),
    _at("publish_until", nullable=True),
    Index("ix_signing_keys_purpose", "purpose", "tenant_id", "created_at"),
)

# The admin portal's one-time sign-in links (printed by `serve --demo`): single use, short-lived, only the
# SHA-256 of the secret is stored.
portal_sign_in_links = Table(
    "portal_sign_in_links",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    _at("created_at"),
    _at("expires_at"),
    _at("used_at", nullable=True),
)

# Secrets the portal signs with (its session cookies), made on first use and kept so every process sharing
# the database signs alike; kept under SYSTEM_TENANT. They must be usable to sign, so they are stored as is.
portal_keys = Table(
    "portal_keys",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("purpose", String(32), primary_key=True),
    Column("secret", String(128), nullable=False),
    _at("created_at"),
)

# The admin portal's live sessions: the cookie names one by its random id, which is stored only as SHA-256.
# Every portal request looks its row up, so signing out (deleting the row) ends the session at once, even
# for a copy of the cookie. Expired rows are deleted as new sessions start.
portal_sessions = Table(
    "portal_sessions",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("id", String(64), primary_key=True),  # SHA-256 of the session id in the cookie
    Column("kind", String(16), nullable=False),  # token | link | user
    Column("subject", String(255), nullable=False),
    _at("created_at"),
    _at("expires_at"),
    Index("ix_portal_sessions_expires_at", "expires_at"),
)

# ---------------------------------------------------------------- webhooks and reclaiming (issue 7)

# Outgoing webhook endpoints. Global ones (every tenant's events, the operator's) live under SYSTEM_TENANT.
# The secret signs deliveries (HMAC), so it is kept as it is, not hashed; the API shows it once.
webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("secret", String(200), nullable=False),
    Column("events", Text, nullable=False),  # JSON list: "license.changed", "subscription.*", "*" ...
    Column("description", String(500), nullable=False, server_default=""),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    _at("created_at"),
    _at("updated_at"),
)

# The transactional outbox: one row per event, written by the transaction that made the change (and only
# when an endpoint wants it). `origin` marks the rows of one recording call (set-based inserts).
webhook_events = Table(
    "webhook_events",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    Column("type", String(64), nullable=False),
    _at("occurred_at"),
    _id("origin"),
    Column("plan_id", String(63), nullable=True),
    Column("subject_id", String(200), nullable=True),
    Column("subject_name", String(320), nullable=True),
    Column("cause", String(64), nullable=True),  # the audit action behind the event
    Column("data", Text, nullable=True),  # JSON text
    Index("ix_webhook_events_origin", "tenant_id", "origin"),
)

# One delivery of one event to one endpoint, retried with backoff; `tenant_id` is the event's tenant.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    _id("tenant_id", primary_key=True),
    _id("id", primary_key=True),
    _id("event_id"),
    _id("endpoint_tenant_id"),
    _id("endpoint_id"),
    Column("state", String(16), nullable=False),  # pending | succeeded | failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    _at("next_attempt_at", nullable=True),
    _at("lease_until", nullable=True),
    Column("lease_token", String(36), nullable=True),
    _at("last_attempt_at", nullable=True),
    Column("last_response_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    _at("created_at"),
    _at("completed_at", nullable=True),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    Index("ix_webhook_deliveries_endpoint", "endpoint_id", "created_at", "id"),
    Index("ix_webhook_deliveries_event", "tenant_id", "event_id"),
)

# A tenant's policy of reclaiming idle seats (off by default: no row means off).
reclaim_policies = Table(
    "reclaim_policies",
    metadata,
    _id("tenant_id", primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("idle_days", Integer, nullable=False),
    _at("updated_at"),
    _at("last_run_at", nullable=True),
    ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
)

# Catalog changes and other events that belong to no tenant are audited under this id.
SYSTEM_TENANT = "00000000-0000-0000-0000-000000000000"
