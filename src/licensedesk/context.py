"""Who is acting, in which request, against which database and clock. Every service function takes one."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from licensedesk.clock import Clock, SystemClock
from licensedesk.db.engine import Database


@dataclass(frozen=True)
class Actor:
    type: str  # user | token | scim | marketplace | system
    id: str | None = None
    name: str | None = None


SYSTEM = Actor("system", None, "licensedesk")


@dataclass(frozen=True)
class Context:
    db: Database
    actor: Actor = SYSTEM
    request_id: str | None = None
    clock: Clock = field(default_factory=SystemClock)

    def as_actor(self, actor: Actor, request_id: str | None = None) -> Context:
        return replace(self, actor=actor, request_id=request_id)
