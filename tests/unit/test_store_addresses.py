"""Which resolved addresses the network claim-check stores may connect to (no servers)."""

from __future__ import annotations

from ipaddress import ip_address

import pytest

from pocketvl.adapters.guarded_http import checked_addresses, is_public
from pocketvl.errors import ImageError

NON_PUBLIC = [
    "127.0.0.1",  # loopback
    "127.8.9.10",
    "::1",
    "10.1.2.3",  # RFC 1918
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "fd12:3456::1",  # unique local (ULA)
    "169.254.169.254",  # link-local: cloud instance metadata
    "fe80::1",
    "fec0::1",  # site-local (deprecated, still routed in some networks)
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "224.0.0.1",  # multicast
    "ff02::1",
    "0.0.0.0",  # unspecified
    "::",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "192.0.2.10",  # documentation
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:10.0.0.1",
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ip_address(address))
    with pytest.raises(ImageError) as info:
        checked_addresses("images.example", [address])
    assert info.value.reason == "uri_forbidden"
    assert "non-public address" in str(info.value)


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses(address: str) -> None:
    assert is_public(ip_address(address))
    assert checked_addresses("images.example", [address]) == [ip_address(address)]


def test_every_resolved_address_is_checked() -> None:
    with pytest.raises(ImageError):
        checked_addresses("images.example", ["93.184.216.34", "10.0.0.1"])
    both = checked_addresses("images.example", ["93.184.216.34", "8.8.8.8", "93.184.216.34"])
    assert both == [ip_address("93.184.216.34"), ip_address("8.8.8.8")]  # order kept, once each


def test_a_host_that_names_its_address_is_a_permission() -> None:
    assert checked_addresses("127.0.0.1", ["127.0.0.1"]) == [ip_address("127.0.0.1")]
    assert checked_addresses("::1", ["::1"]) == [ip_address("::1")]
    assert checked_addresses("10.0.0.7", ["10.0.0.7"]) == [ip_address("10.0.0.7")]
    assert checked_addresses("localhost", ["::1", "127.0.0.1"]) == [
        ip_address("::1"),
        ip_address("127.0.0.1"),
    ]
    # localhost permits loopback only, and a literal permits itself only.
    for host, address in [("localhost", "10.0.0.5"), ("127.0.0.1", "127.0.0.2")]:
        with pytest.raises(ImageError):
            checked_addresses(host, [address])
    # Spellings that resolve to loopback without being the literal are names, not literals.
    for host in ["127.1", "2130706433", "localhost.", "api.localhost"]:
        with pytest.raises(ImageError):
            checked_addresses(host, ["127.0.0.1"])


def test_an_operator_listed_private_host_may_resolve_privately() -> None:
    listed = frozenset({"minio"})
    assert checked_addresses("minio", ["10.0.3.4"], listed) == [ip_address("10.0.3.4")]
    with pytest.raises(ImageError, match="private_hosts"):
        checked_addresses("minio", ["10.0.3.4"])
    with pytest.raises(ImageError):
        checked_addresses("minio.evil", ["10.0.3.4"], listed)  # exact names only


def test_private_hosts_are_bare_names() -> None:
    from pydantic import ValidationError

    from pocketvl.settings import ImageStoreSettings

    assert ImageStoreSettings(private_hosts=["MinIO"]).private_hosts == ["minio"]
    with pytest.raises(ValidationError, match="bare host name"):
        ImageStoreSettings(private_hosts=["minio:9000"])
