"""Webhooks are sent from licensedesk's own servers, so they may go to public addresses only (no SSRF):
URLs naming loopback, private, link-local (the cloud metadata service) or other non-public addresses are
refused when registered, host names are checked when sending, and the request goes to the address that
was checked. LICENSEDESK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES=1 (which the rest of the suite sets, its
receivers being on loopback) lifts it."""

from __future__ import annotations

import socket

import pytest

from licensedesk.licensing import service as licensing
from licensedesk.settings import Settings
from licensedesk.webhooks import addresses, delivery
from licensedesk.webhooks import service as webhooks
from tests.api.support import Unchanged, assert_problem, bearer, lenient
from tests.webhooks.receiver import Receiver
from tests.world import PLAN, make_world

STRICT = delivery.Policy(timeout_seconds=5, max_attempts=2, backoff_seconds=30, allow_private_addresses=False)

NOT_PUBLIC = [
    "127.0.0.1",
    "127.8.9.10",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # the cloud metadata service
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "0.0.0.0",
    "224.0.0.1",
    "255.255.255.255",
    "::1",
    "fe80::1",
    "fc00::1",
    "::ffff:127.0.0.1",  # loopback, written as IPv6
    "::",
    "localhost",
    "LOCALHOST.",
    "api.localhost",
]
PUBLIC = ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "vendor.example", "hooks.vendor.example.com"]


@pytest.mark.parametrize("host", NOT_PUBLIC)
def test_a_host_naming_a_non_public_address_is_refused(host):
    assert addresses.refusal(host) is not None


@pytest.mark.parametrize("host", PUBLIC)
def test_a_public_address_or_a_name_is_accepted_before_resolving(host):
    assert addresses.refusal(host) is None


def fake_dns(monkeypatch, table: dict[str, list[str]]) -> None:
    def getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in table[host]]

    monkeypatch.setattr(addresses, "getaddrinfo", getaddrinfo)


def test_a_name_must_resolve_to_public_addresses_only(monkeypatch):
    fake_dns(
        monkeypatch,
        {"good.example": ["93.184.216.34"], "sneaky.example": ["93.184.216.34", "10.0.0.5"]},
    )
    assert addresses.resolve("good.example", 443) == "93.184.216.34"
    with pytest.raises(addresses.AddressNotAllowed, match=r"10\.0\.0\.5"):
        addresses.resolve("sneaky.example", 443)
    with pytest.raises(addresses.AddressNotAllowed, match="does not resolve"):
        addresses.resolve("nowhere.example", 443)


@pytest.fixture
def strict_registration(monkeypatch):
    monkeypatch.setattr(webhooks, "get_settings", lambda: Settings(webhook_allow_private_addresses=False))


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:5432/",
        "http://[::1]/hook",
        "https://10.0.0.8/hook",
        "http://localhost:8080/hook",
        "http://[::ffff:7f00:1]/hook",
    ],
)
def test_registering_a_non_public_url_is_refused_and_changes_nothing(api, strict_registration, url):
    unchanged = Unchanged(api)
    r = lenient(api).post(
        f"/v1/tenants/{api.tenant}/webhooks", json={"url": url}, headers=bearer(api.tokens["global_admin"])
    )
    body = assert_problem(r, 422)
    assert "public" in body["detail"]
    unchanged.check(url)


def test_a_name_resolving_to_a_private_address_gets_nothing_sent(ctx, receiver: Receiver, monkeypatch):
    """The name passed registration (it is a name); when sending, it resolves to loopback: refused, the
    attempt recorded as failed, nothing reaches the address."""
    w = make_world(ctx, "contoso")
    port = int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
    ep, _ = webhooks.create_endpoint(
        ctx, w.tenant, f"http://hooks.vendor.test:{port}/x", event_types=["license.changed"]
    )
    fake_dns(monkeypatch, {"hooks.vendor.test": ["127.0.0.1"]})
    w.buy(1)
    licensing.assign(ctx, w.tenant, PLAN, users=[w.user("ann")])
    assert delivery.deliver_due(ctx, policy=STRICT) >= 1
    assert receiver.requests == []
    log = webhooks.list_deliveries(ctx, w.tenant, ep.id)
    assert log.items and all("address not allowed" in (d.last_error or "") for d in log.items)


def test_the_request_goes_to_the_address_that_was_checked(ctx, receiver: Receiver, monkeypatch):
    """DNS rebinding: the name is resolved and checked once, and the request is sent to that address
    (with the name in Host), not resolved again by the HTTP client. Here the checked address is the local
    receiver, taken for public; the name itself resolves nowhere, so only the pinned address can work."""
    w = make_world(ctx, "contoso")
    port = int(receiver.url.rsplit(":", 1)[1].split("/", 1)[0])
    webhooks.create_endpoint(
        ctx, w.tenant, f"http://hooks.vendor.test:{port}/x", event_types=["license.changed"]
    )
    fake_dns(monkeypatch, {"hooks.vendor.test": ["127.0.0.1"]})
    monkeypatch.setattr(addresses, "public", lambda ip: True)
    w.buy(1)
    licensing.assign(ctx, w.tenant, PLAN, users=[w.user("ann")])
    assert delivery.deliver_due(ctx, policy=STRICT) >= 1
    assert receiver.requests, "nothing was delivered"
    assert {r.headers["host"] for r in receiver.requests} == {f"hooks.vendor.test:{port}"}
