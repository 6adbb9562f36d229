from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from agents.delivery.providers.base import InvalidAddressError, PermanentDeliveryError
from agents.delivery.providers.ssrf import Allowlist, refusal_reason, vet_url


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal_reason(ip_address(address)) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("ff02::1", "multicast"),
        ("::ffff:10.0.0.1", "private (IPv4 10.0.0.1 embedded in IPv6)"),
        ("64:ff9b::a9fe:a9fe", "link-local (IPv4 169.254.169.254 embedded in IPv6)"),
        ("2002:7f00:1::", "loopback (IPv4 127.0.0.1 embedded in IPv6)"),
    ],
)
def test_internal_addresses_are_refused(address: str, reason: str) -> None:
    assert refusal_reason(ip_address(address)) == reason


def test_allowlist_parses_hosts_addresses_and_cidrs() -> None:
    allowlist = Allowlist.parse(" Hooks.Internal. ,127.0.0.1, 10.0.0.0/8,,::1 ")
    assert allowlist.hosts == frozenset({"hooks.internal"})
    assert allowlist.networks == (
        ip_network("127.0.0.1/32"),
        ip_network("10.0.0.0/8"),
        ip_network("::1/128"),
    )
    assert allowlist.allows_host("HOOKS.internal.")
    assert allowlist.allows_address(ip_address("10.20.30.40"))
    assert allowlist.allows_address(ip_address("::ffff:10.20.30.40"))
    assert not allowlist.allows_address(ip_address("11.0.0.1"))
    assert Allowlist.parse("") == Allowlist()


@pytest.mark.parametrize("entry", ["http://hooks.internal", "hooks internal", "10.0.0.0/33x"])
def test_allowlist_rejects_entries_it_cannot_read(entry: str) -> None:
    with pytest.raises(ValueError, match="neither"):
        Allowlist.parse(entry)


def test_vet_url_keeps_public_urls_and_host_names_for_the_resolver() -> None:
    assert vet_url("https://93.184.216.34/hook", Allowlist()).host == "93.184.216.34"
    assert vet_url("https://hooks.example/x", Allowlist()).host == "hooks.example"


def test_vet_url_refuses_internal_literals_unless_allowed() -> None:
    with pytest.raises(PermanentDeliveryError):
        vet_url("http://[::ffff:7f00:1]/", Allowlist())
    assert vet_url("http://[::ffff:7f00:1]/", Allowlist.parse("127.0.0.0/8")).port == 80


@pytest.mark.parametrize("url", ["gopher://x/", "http://", "http://exa mple.com/"])
def test_vet_url_refuses_what_is_not_an_http_url(url: str) -> None:
    with pytest.raises(InvalidAddressError):
        vet_url(url, Allowlist())
