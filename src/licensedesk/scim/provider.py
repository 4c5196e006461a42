"""What the SCIM endpoint announces: the RFC 7643 schemas and resource types of scim2-server, and a
service provider configuration that says what licensedesk supports (no bulk, no passwords)."""

from __future__ import annotations

from functools import cache

from scim2_models import AuthenticationScheme, Bulk, ChangePassword, ETag, Filter, Patch, ScimProvider, Sort
from scim2_models import ServiceProviderConfig as Config
from scim2_server.service import ScimService
from scim2_server.utils import load_default_resource_types, load_default_schemas

MAX_RESULTS = 1000


def service_provider_config() -> Config:
    return Config(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="licensedesk API token",
                description="Authorization: Bearer <an API token of the tenant with the role scim>",
                primary=True,
            )
        ],
    )


@cache
def scim_service() -> ScimService:
    """One service for the process: it holds no state but the description above."""
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(),
        load_default_resource_types().values(),
        config=service_provider_config(),
    )
    return ScimService(provider)
