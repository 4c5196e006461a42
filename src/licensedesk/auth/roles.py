"""Roles and what they may do (SPEC section 2), as plain data.

| role          | scope       | may                                                    |
| operator      | all tenants | everything                                             |
| global_admin  | one tenant  | everything in the tenant                               |
| license_admin | one tenant  | read; assign, unassign, reassign, reprocess            |
| billing_admin | one tenant  | read; subscriptions                                    |
| reader        | one tenant  | read                                                   |
| scim          | one tenant  | the tenant's SCIM endpoint only                        |
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPERATOR = "operator"
GLOBAL_ADMIN = "global_admin"
LICENSE_ADMIN = "license_admin"
BILLING_ADMIN = "billing_admin"
READER = "reader"
SCIM = "scim"

ROLES = (OPERATOR, GLOBAL_ADMIN, LICENSE_ADMIN, BILLING_ADMIN, READER, SCIM)
TENANT_ROLES = (GLOBAL_ADMIN, LICENSE_ADMIN, BILLING_ADMIN, READER, SCIM)
_READERS = frozenset({GLOBAL_ADMIN, LICENSE_ADMIN, BILLING_ADMIN, READER})

# permission -> the tenant roles that have it (the operator has every permission)
PERMISSIONS: dict[str, frozenset[str]] = {
    "tenants.manage": frozenset(),  # create and list tenants
    "tenant.read": _READERS,
    "tenant.write": frozenset({GLOBAL_ADMIN}),
    "catalog.read": _READERS,
    "catalog.write": frozenset(),
    "directory.read": _READERS,
    "directory.write": frozenset({GLOBAL_ADMIN}),
    "licenses.read": _READERS,
    "licenses.write": frozenset({GLOBAL_ADMIN, LICENSE_ADMIN}),
    "subscriptions.read": _READERS,
    "subscriptions.write": frozenset({GLOBAL_ADMIN, BILLING_ADMIN}),
    "audit.read": _READERS,
    "tokens.manage": frozenset({GLOBAL_ADMIN}),
    "licensing.check": _READERS,  # the vendor's batch check with a tenant token
    "scim": frozenset({SCIM}),
    # outgoing webhooks: readers see endpoints and delivery logs (never a secret); global ones: operator
    "webhooks.read": _READERS,
    "webhooks.write": frozenset({GLOBAL_ADMIN}),
    "webhooks.global": frozenset(),
    # reclaiming idle seats: setting the policy and running it (the dry run is licenses.read)
    "reclaim.write": frozenset({GLOBAL_ADMIN}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API token or a user signed in through the tenant's identity provider."""

    kind: str  # token | user
    id: str
    name: str
    roles: frozenset[str]
    tenant_id: str | None  # None: the operator, across all tenants
    token_id: str | None = None
    claims: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_operator(self) -> bool:
        return OPERATOR in self.roles

    def may(self, permission: str) -> bool:
        if self.is_operator:
            return permission != "scim"
        return bool(self.roles & PERMISSIONS[permission])

    def sees_tenant(self, tenant_id: str) -> bool:
        return self.is_operator or self.tenant_id == tenant_id


def grantable_by(principal: Principal) -> tuple[str, ...]:
    """Roles of the tokens a principal may create."""
    if principal.is_operator:
        return ROLES
    if GLOBAL_ADMIN in principal.roles:
        return TENANT_ROLES
    return ()
