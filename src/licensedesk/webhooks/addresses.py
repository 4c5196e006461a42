"""Where webhooks may be sent: public addresses only, unless the operator allows private ones.

A tenant admin registers a URL and licensedesk's own servers send to it: without this, a webhook could
reach what only those servers can reach (the database, the cloud's metadata service at 169.254.169.254,
an admin interface on loopback). URLs that name such an address are refused when registered; host names
are resolved when sending, every address they resolve to must be public, and the request then goes to
the address that was checked (so a name that resolves differently a moment later, DNS rebinding, cannot
slip through). `LICENSEDESK_WEBHOOK_ALLOW_PRIVATE_ADDRESSES=1` lifts it, for receivers on a private
network or in development.
"""

from __future__ import annotations

import ipaddress
import socket

LOCAL_NAMES = ("localhost", "localhost.localdomain")
getaddrinfo = socket.getaddrinfo  # (a module attribute, so tests can stand in for DNS)


class AddressNotAllowed(Exception):
    pass


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(value.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip


def public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Globally routable unicast: not private, loopback, link-local, shared (CGNAT), reserved, multicast."""
    return ip.is_global and not ip.is_multicast


def refusal(host: str) -> str | None:
    """Why a URL's host may not be registered without resolving it (an address or a local name), or None."""
    name = host.lower().rstrip(".")
    if name in LOCAL_NAMES or name.endswith(".localhost"):
        return f"{host} is this machine"
    ip = _ip(host)
    if ip is not None and not public(ip):
        return f"{host} is not a public address"
    return None


def resolve(host: str, port: int) -> str:
    """The address to send to: the host itself when it is an address, else the first address the name
    resolves to; raises AddressNotAllowed when any of them is not public or the name does not resolve."""
    why = refusal(host)
    if why:
        raise AddressNotAllowed(why)
    if _ip(host) is not None:
        return host.strip("[]")
    try:
        infos = getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise AddressNotAllowed(f"{host} does not resolve: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise AddressNotAllowed(f"{host} does not resolve")
    for address in addresses:
        ip = _ip(address)
        if ip is None or not public(ip):
            raise AddressNotAllowed(f"{host} resolves to {address}, which is not a public address")
    return addresses[0]
