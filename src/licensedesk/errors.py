"""Domain errors. Services raise them; the API turns each into an RFC 9457 problem document.

`code` is the stable machine-readable code of SPEC section 2; `status` the HTTP status it maps to;
`extra` the fields that explain it (e.g. `needed`, `available`, `groups`).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"
    status = 400
    title = "Request refused"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"

    def __init__(self, kind: str, ident: object) -> None:
        super().__init__(f"{kind} {ident!s} was not found", resource=kind, id=str(ident))


class Conflict(DomainError):
    code = "conflict"
    status = 409
    title = "Conflict"


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 422
    title = "Invalid value"


class Duplicate(Conflict):
    code = "duplicate"
    title = "Already exists"

    def __init__(self, kind: str, field: str, value: object) -> None:
        DomainError.__init__(self, f"a {kind} with {field} {value!s} already exists", field=field)


class NotEnoughLicenses(Conflict):
    code = "not_enough_licenses"
    title = "Not enough licenses"

    def __init__(self, needed: int, available: int) -> None:
        DomainError.__init__(
            self,
            f"this assignment needs {needed} licenses but only {available} are available; "
            "buy more, free some, or assign as many as possible (allowPartial)",
            needed=needed,
            available=available,
        )


class LicenseInherited(Conflict):
    code = "license_inherited"
    title = "License is inherited from groups"

    def __init__(self, user: str, groups: list[dict[str, str]]) -> None:
        names = ", ".join(g["displayName"] for g in groups)
        DomainError.__init__(
            self,
            f"{user} holds this license only through groups ({names}); remove it on the group instead",
            groups=groups,
        )


class GroupHasLicenses(Conflict):
    code = "group_has_licenses"
    title = "Group has licenses assigned"

    def __init__(self, group: str, plans: list[str]) -> None:
        DomainError.__init__(
            self,
            f"group {group} has licenses assigned ({', '.join(plans)}); unassign them first",
            plans=plans,
        )


class MembershipCycle(Conflict):
    code = "membership_cycle"
    title = "Membership would make a cycle"

    def __init__(self, group: str, member: str) -> None:
        DomainError.__init__(
            self, f"adding group {member} to {group} would make a cycle", groupId=group, memberId=member
        )


class QuantityBelowAssigned(Conflict):
    code = "quantity_below_assigned"
    title = "Fewer seats than assigned"

    def __init__(self, seats: int, assigned: int) -> None:
        DomainError.__init__(
            self,
            f"the pool would have {seats} seats but {assigned} are assigned; unassign first, "
            "or pass force to let the most recently licensed users lose their seats",
            seats=seats,
            assigned=assigned,
        )


class SubscriptionTerminal(Conflict):
    code = "subscription_terminal"
    title = "Subscription has ended"

    def __init__(self, status: str) -> None:
        DomainError.__init__(self, f"the subscription is {status}, which is final", subscriptionStatus=status)


class AlreadyAssigned(Conflict):
    code = "already_assigned"
    title = "Already assigned"


class NotAssigned(Conflict):
    code = "not_assigned"
    title = "Not assigned"
