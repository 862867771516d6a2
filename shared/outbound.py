"""Where the system may send HTTP on a client's say-so (webhooks, task callbacks): public addresses only.

Intake checks a task's `callback_url` when it is submitted and the notifier a webhook's URL when it
is registered, both with `check_url_is_public`; the notifier checks again, with `is_public_address`,
on every address it connects to.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from pydantic import AnyHttpUrl, TypeAdapter, ValidationError

# IPv6 forms that carry an IPv4 address, or route to one, and that `is_global` calls global.
# The well-known NAT64 prefix is what a DNS64 resolver answers for an IPv4-only host, so its IPv4
# address is judged instead; every other form is refused whatever it embeds.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_REFUSED_V6 = tuple(
    ipaddress.IPv6Network(prefix)
    for prefix in (
        "::/96",  # IPv4-compatible (deprecated): ::a.b.c.d
        "::ffff:0:0:0/96",  # SIIT, IPv4-translated: ::ffff:0:a.b.c.d
        "64:ff9b:1::/48",  # NAT64 for local use (RFC 8215)
        "2002::/16",  # 6to4: the IPv4 address in bits 16-48
        "2001::/32",  # Teredo: the IPv4 address inverted in the last 32 bits
        "fec0::/10",  # site-local (deprecated, still routed inside some networks)
    )
)

RESOLVE_TIMEOUT_S = 5.0

_HTTP_URL = TypeAdapter(AnyHttpUrl)


class BlockedAddressError(Exception):
    """The URL's host is, or resolves to, an address that is not public."""


def is_public_address(address: str) -> bool:
    """False for private, loopback, link-local, multicast, reserved and unspecified addresses, in any
    IPv6 form that embeds one of them."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        elif any(ip in network for network in _REFUSED_V6):
            return False
    # `is_global` is False for private, loopback, link-local, shared (CGNAT), reserved and unspecified.
    return ip.is_global and not ip.is_multicast


def is_http_url(url: str) -> bool:
    """Whether `url` is an http or https URL with a host, as a webhook's URL must be; no lookup."""
    try:
        _HTTP_URL.validate_python(url)
    except ValidationError:
        return False
    return True


async def check_url_is_public(url: str) -> None:
    """Raise BlockedAddressError unless every address `url`'s host resolves to is public."""
    host = urlsplit(url).hostname
    if not host:
        raise BlockedAddressError("the URL has no host")
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_S):
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError) as exc:
        raise BlockedAddressError(f"{host} does not resolve") from exc
    for info in infos:
        if not is_public_address(str(info[4][0])):
            raise BlockedAddressError(f"{host} resolves to a non-public address")
