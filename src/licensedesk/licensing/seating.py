"""The seating rule of SPEC section 1, as plain functions over plain data (no I/O).

For one tenant and plan, the active users who hold the plan are ordered by claim (claim time, then user
id). The first `enabled` are Active, the next `warning` Warning, the next `suspended` Suspended, the rest
wait in Error (CountViolation). Inactive users hold no seat and are Disabled. Seats promised to accepted
but unprocessed group work (reservations) take their place in that order at the time they were accepted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

ACTIVE = "Active"
WARNING = "Warning"
SUSPENDED = "Suspended"
ERROR = "Error"
DISABLED = "Disabled"
SEATED = (ACTIVE, WARNING, SUSPENDED)
STATES = (ACTIVE, WARNING, SUSPENDED, ERROR, DISABLED)
COUNT_VIOLATION = "CountViolation"

# subscription status -> which kind of seat its quantity gives the pool
SEATS_OF_STATUS = {"Active": "enabled", "Warning": "warning", "Suspended": "suspended"}
SUBSCRIPTION_STATUSES = ("Active", "Warning", "Suspended", "Expired", "Cancelled")
TERMINAL_STATUSES = ("Expired", "Cancelled")


@dataclass(frozen=True)
class Units:
    enabled: int = 0
    warning: int = 0
    suspended: int = 0

    @property
    def purchased(self) -> int:
        return self.enabled + self.warning

    @property
    def seats(self) -> int:
        """Every seat a holder can occupy, usable or not."""
        return self.enabled + self.warning + self.suspended


def pool_units(subscriptions: Iterable[tuple[str, int]]) -> Units:
    """Sum (status, quantity) of a plan's subscriptions into the pool's units."""
    sums = {"enabled": 0, "warning": 0, "suspended": 0}
    for status, quantity in subscriptions:
        kind = SEATS_OF_STATUS.get(status)
        if kind:
            sums[kind] += quantity
    return Units(**sums)


def band_limits(units: Units) -> tuple[int, int, int]:
    """Last rank (1-based, inclusive) of the Active, Warning and Suspended bands."""
    return units.enabled, units.enabled + units.warning, units.seats


def state_for_rank(rank: int, units: Units) -> str:
    active_end, warning_end, suspended_end = band_limits(units)
    if rank <= active_end:
        return ACTIVE
    if rank <= warning_end:
        return WARNING
    if rank <= suspended_end:
        return SUSPENDED
    return ERROR


@dataclass(frozen=True)
class Holder:
    user_id: str
    claim_at: datetime
    active: bool
    claim_key: str | None = None  # the tie-break among equal claim times; None: the user's own id


def seat(
    holders: Iterable[Holder],
    units: Units,
    reservations: Sequence[tuple[datetime, int]] = (),
) -> dict[str, str]:
    """The state of every holder. `reservations` are (accepted_at, seats) of queued group work."""
    ordered = sorted(
        (h for h in holders if h.active),
        key=lambda h: (h.claim_at, h.user_id if h.claim_key is None else h.claim_key, h.user_id),
    )
    states: dict[str, str] = {}
    for index, holder in enumerate(ordered, start=1):
        reserved_before = sum(seats for at, seats in reservations if at < holder.claim_at)
        states[holder.user_id] = state_for_rank(index + reserved_before, units)
    for holder in holders:
        if not holder.active:
            states[holder.user_id] = DISABLED
    return states


@dataclass(frozen=True)
class Counts:
    active: int = 0
    warning: int = 0
    suspended: int = 0
    waiting: int = 0
    disabled: int = 0

    @property
    def assigned(self) -> int:
        return self.active + self.warning + self.suspended


def count(states: Iterable[str]) -> Counts:
    c = {ACTIVE: 0, WARNING: 0, SUSPENDED: 0, ERROR: 0, DISABLED: 0}
    for s in states:
        c[s] += 1
    return Counts(c[ACTIVE], c[WARNING], c[SUSPENDED], c[ERROR], c[DISABLED])


def available(units: Units, assigned: int, reserved: int = 0) -> int:
    """Free usable seats: purchased minus seated, minus seats promised to queued work."""
    return max(0, units.purchased - assigned - reserved)


def pool_status(units: Units) -> str:
    """One word for a Licenses row: the worst thing an admin should know about the pool."""
    if units.warning:
        return "Warning"
    if units.enabled:
        return "Active"
    if units.suspended:
        return "Suspended"
    return "Inactive"


def error_of(state: str) -> str | None:
    return COUNT_VIOLATION if state == ERROR else None
