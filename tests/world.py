"""A small world to test in: a tenant, the Innofalls Charts product with a Pro plan, and helpers."""

from __future__ import annotations

from dataclasses import dataclass

from licensedesk.billing import service as billing
from licensedesk.catalog import service as catalog
from licensedesk.context import Context
from licensedesk.directory import service as directory
from licensedesk.licensing import processing
from licensedesk.licensing import service as licensing
from licensedesk.tenancy import service as tenancy

PLAN = "innofalls-charts-pro"


@dataclass
class World:
    ctx: Context
    tenant: str

    def user(self, name: str, **kw: object) -> str:
        return directory.create_user(self.ctx, self.tenant, f"{name}@contoso.com", name.title(), **kw).id  # type: ignore[arg-type]

    def users(self, prefix: str, n: int) -> list[str]:
        return [self.user(f"{prefix}{i:03d}") for i in range(n)]

    def group(self, name: str, users: list[str] = (), groups: list[str] = ()) -> str:  # type: ignore[assignment]
        return directory.create_group(
            self.ctx, self.tenant, name, members={"users": list(users), "groups": list(groups)}
        ).id

    def buy(self, quantity: int, plan: str = PLAN, **kw: object) -> str:
        return billing.create_subscription(self.ctx, self.tenant, plan, quantity, **kw).id  # type: ignore[arg-type]

    def drain(self) -> int:
        return processing.drain(self.ctx)

    def overview(self, plan: str = PLAN) -> licensing.LicenseRow:
        return licensing.license_overview(self.ctx, self.tenant, plan)

    def state(self, user_id: str, plan: str = PLAN) -> str | None:
        for lic in licensing.user_licenses(self.ctx, self.tenant, user_id):
            if lic.plan_id == plan:
                return lic.state
        return None

    def states(self, user_ids: list[str], plan: str = PLAN) -> list[str | None]:
        return [self.state(u, plan) for u in user_ids]


def make_world(ctx: Context, slug: str = "contoso") -> World:
    if not any(p.id == "innofalls-charts" for p in catalog.list_products(ctx)):
        catalog.create_product(ctx, "innofalls-charts", "Innofalls Charts", "api://innofalls-charts")
        catalog.create_plan(ctx, "innofalls-charts", PLAN, "Pro", "innofalls.charts.pro", trial_days=30)
        catalog.create_plan(
            ctx, "innofalls-charts", "innofalls-charts-basic", "Basic", "innofalls.charts.basic"
        )
    tenant = tenancy.create_tenant(ctx, slug, slug.title())
    return World(ctx, tenant.id)
