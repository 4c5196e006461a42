"""The demo tenant, Contoso: users, nested groups, the Innofalls Charts product, a 25-seat subscription
and some direct and group assignments. Seeding is idempotent: an existing Contoso is left as it is."""

from __future__ import annotations

from dataclasses import dataclass

from licensedesk.auth import service as auth
from licensedesk.billing import service as billing
from licensedesk.catalog import service as catalog
from licensedesk.context import Context
from licensedesk.directory import service as directory
from licensedesk.errors import NotFound
from licensedesk.licensing import processing
from licensedesk.licensing import service as licensing
from licensedesk.tenancy import service as tenancy

PRODUCT = "innofalls-charts"
PRO = "innofalls-charts-pro"
BASIC = "innofalls-charts-basic"
TENANT = "contoso"
DEMO_TOKEN_NAME = "demo"

FIRST = [
    "Adele",
    "Alex",
    "Allan",
    "Ben",
    "Bianca",
    "Carlos",
    "Chen",
    "Christie",
    "Diego",
    "Elena",
    "Emily",
    "Enrico",
    "Fatima",
    "Grady",
    "Hana",
    "Henrietta",
    "Isaiah",
    "Jamal",
    "Johanna",
    "Joni",
    "Kenji",
    "Lee",
    "Lidia",
    "Lynne",
    "Mateo",
    "Megan",
    "Miriam",
    "Nestor",
    "Nora",
    "Olga",
    "Patti",
    "Pradeep",
    "Quinn",
    "Raul",
    "Sakura",
    "Sofia",
    "Tomas",
    "Uma",
    "Valentina",
    "Wei",
    "Xavier",
    "Yara",
    "Zoe",
    "Amara",
    "Bjorn",
    "Chiara",
    "Dmitri",
    "Esther",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kaia",
    "Luca",
    "Mira",
    "Noah",
    "Oskar",
    "Priya",
    "Rosa",
]
LAST = [
    "Vance",
    "Wilber",
    "Deyoung",
    "Brooks",
    "Diaz",
    "Gomez",
    "Wang",
    "Cline",
    "Soto",
    "Petrova",
    "Clarke",
    "Rossi",
    "Haddad",
    "Archie",
    "Sato",
    "Fischer",
    "Okafor",
    "Reed",
    "Lind",
    "Mitchell",
    "Tanaka",
    "Gu",
    "Holloway",
    "Robinson",
    "Alvarez",
    "Bowen",
    "Caplan",
    "Celestine",
    "Ahmed",
    "Ivanova",
    "Fernandez",
    "Kumar",
    "Murphy",
    "Ortega",
    "Yamada",
    "Moreau",
    "Novak",
    "Shah",
    "Bianchi",
    "Zhang",
    "Dubois",
    "Nasser",
    "Lopez",
    "Okoro",
    "Larsen",
    "Conti",
    "Volkov",
    "Cohen",
    "Rahimi",
    "Berg",
    "Laurent",
    "Silva",
    "Weber",
    "Nilsen",
    "Ricci",
    "Kaur",
    "Hansen",
    "Berg",
    "Patel",
    "Garcia",
]


@dataclass
class Demo:
    tenant_id: str
    operator_token: str
    admin_token: str
    seeded: bool


def seed(ctx: Context) -> Demo:
    """Create Contoso unless it exists, then issue fresh demo tokens (revoking the previous ones)."""
    seeded = False
    try:
        tenant = tenancy.get_tenant(ctx, TENANT)
    except NotFound:
        tenant = _seed(ctx)
        seeded = True
    auth.revoke_tokens_named(ctx, None, DEMO_TOKEN_NAME)
    auth.revoke_tokens_named(ctx, tenant.id, DEMO_TOKEN_NAME)
    _, operator = auth.create_token(ctx, "operator", name=DEMO_TOKEN_NAME)
    _, admin = auth.create_token(ctx, "global_admin", tenant_ref=tenant.id, name=DEMO_TOKEN_NAME)
    return Demo(tenant.id, operator, admin, seeded)


def _seed(ctx: Context) -> tenancy.Tenant:
    if not any(p.id == PRODUCT for p in catalog.list_products(ctx)):
        catalog.create_product(ctx, PRODUCT, "Innofalls Charts", "api://innofalls-charts")
        catalog.create_plan(ctx, PRODUCT, PRO, "Pro", "innofalls.charts.pro", trial_days=30)
        catalog.create_plan(ctx, PRODUCT, BASIC, "Basic", "innofalls.charts.basic")
    tenant = tenancy.create_tenant(ctx, TENANT, "Contoso Ltd", external_tenant_id="contoso-demo-tenant")
    t = tenant.id
    users = []
    for i, (first, last) in enumerate(zip(FIRST, LAST, strict=True)):
        upn = f"{first.lower()}.{last.lower()}@contoso.com"
        users.append(
            directory.create_user(ctx, t, upn, f"{first} {last}", external_id=f"contoso-oid-{i:04d}").id
        )
    emea = directory.create_group(
        ctx, t, "Finance-EMEA", description="Finance, Europe and Middle East", members={"users": users[0:5]}
    )
    americas = directory.create_group(ctx, t, "Finance-Americas", members={"users": users[5:9]})
    directory.create_group(
        ctx,
        t,
        "Finance",
        description="All of Finance",
        members={"users": users[9:11], "groups": [emea.id, americas.id]},
    )
    platform = directory.create_group(ctx, t, "Platform", members={"users": users[11:19]})
    directory.create_group(ctx, t, "Engineering", members={"users": users[19:27], "groups": [platform.id]})
    sales = directory.create_group(ctx, t, "Sales", members={"users": users[27:45]})
    directory.create_group(ctx, t, "Marketing", members={"users": users[45:55]})
    directory.create_group(
        ctx, t, "Leadership", members={"users": [users[0], users[11], users[27], users[55]]}
    )

    billing.create_subscription(ctx, t, PRO, 25)
    billing.create_subscription(ctx, t, BASIC, 20)
    finance = directory.list_groups(ctx, t, search="Finance", limit=10).items
    finance_id = next(g.id for g in finance if g.display_name == "Finance")
    licensing.assign(ctx, t, PRO, groups=[finance_id])
    licensing.assign(ctx, t, PRO, users=users[55:60])
    licensing.assign(ctx, t, BASIC, groups=[sales.id])
    processing.drain(ctx)
    return tenant
