"""Which addresses the system may send a client's webhooks and callbacks to."""

from __future__ import annotations

import pytest

from shared.outbound import BlockedAddressError, check_url_is_public, is_public_address


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "fe80::1%eth0",
        "fc00::1",
        "0.0.0.0",  # noqa: S104 - an address under test, not a bind
        "100.64.0.1",
        "::ffff:127.0.0.1",
        "224.0.0.1",
    ],
)
def test_private_loopback_and_link_local_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
        "64:ff9b:1::808:808",  # local-use NAT64, whatever it embeds
        "2002:a9fe:a9fe::1",  # 6to4 around 169.254.169.254
        "2002:808:808::1",  # 6to4, whatever it embeds
        "::a9fe:a9fe",  # IPv4-compatible 169.254.169.254
        "::127.0.0.1",
        "::ffff:169.254.169.254",  # IPv4-mapped
        "::ffff:0:a9fe:a9fe",  # SIIT, IPv4-translated
        "::ffff:0:808:808",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "fec0::1",  # site-local
    ],
)
def test_ipv6_forms_of_private_or_ipv4_carrying_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_internet_addresses_are_public(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "url",
    [
        "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
        "http://[::ffff:0:7f00:1]:8080/hook",
        "http://[2002:a9fe:a9fe::]/hook",
        "http://[fec0::1]/hook",
        "http://127.0.0.1/hook",
        "http://2130706433/hook",  # 127.0.0.1 written as one number
        "http:///no-host",
    ],
)
async def test_urls_whose_host_is_not_public_are_blocked(url: str) -> None:
    with pytest.raises(BlockedAddressError):
        await check_url_is_public(url)


async def test_a_public_literal_passes() -> None:
    await check_url_is_public("https://93.184.216.34/hooks/errands")
