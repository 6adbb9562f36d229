from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from agents.delivery.providers.base import InvalidAddressError, PermanentDeliveryError
from agents.delivery.providers.ssrf import Allowlist, parse_ip, refusal_reason, vet_url


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


# Every spelling below names a loopback, private or unspecified address the way inet_aton
# (and so getaddrinfo, curl and browsers) read it; the guard must see through all of them.
INTERNAL_SPELLINGS: list[tuple[str, str]] = [
    # The four from issue 10: two-part, one-part, decimal and octal forms.
    ("127.2", "127.0.0.2"),
    ("0", "0.0.0.0"),
    ("2130706434", "127.0.0.2"),
    ("0177.0.0.2", "127.0.0.2"),
    # Hexadecimal, mixed bases, three parts, zero-padded octets, a trailing dot.
    ("0x7f000001", "127.0.0.1"),
    ("0X7F.0.0.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("127.000.000.002", "127.0.0.2"),
    ("0x0a.0.0.1", "10.0.0.1"),
    ("012.0.0.1", "10.0.0.1"),
    ("169.254.43518", "169.254.169.254"),
    ("0xa9fea9fe", "169.254.169.254"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0x", "0.0.0.0"),
    # IPv6: zero-padded, IPv4-mapped and -compatible (also dotted), scoped.
    ("0000:0000:0000:0000:0000:0000:0000:0001", "::1"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ("::ffff:7f00:2", "::ffff:7f00:2"),
    ("::127.0.0.2", "::7f00:2"),
    ("::ffff:0177.0.0.1", "::ffff:7f00:1"),
    ("fe80::1%eth0", "fe80::1"),
    ("[::1]", "::1"),
]


@pytest.mark.parametrize(("spelling", "canonical"), INTERNAL_SPELLINGS)
def test_every_spelling_of_an_address_is_read_as_inet_aton_would(
    spelling: str, canonical: str
) -> None:
    assert parse_ip(spelling) == ip_address(canonical)


@pytest.mark.parametrize(("spelling", "canonical"), INTERNAL_SPELLINGS)
def test_vet_url_refuses_internal_addresses_however_spelled(spelling: str, canonical: str) -> None:
    host = spelling if ":" not in spelling or spelling.startswith("[") else f"[{spelling}]"
    url = f"http://{host.replace('%', '%25')}:8080/hook"
    with pytest.raises(PermanentDeliveryError, match="webhook refused"):
        vet_url(url, Allowlist())
    # The allowlist is matched against the address, not against its spelling.
    allowed = Allowlist.parse(str(parse_ip(canonical)))
    assert vet_url(url, allowed).port == 8080


def test_the_ipv4_compatible_form_is_refused_for_the_address_it_embeds() -> None:
    assert refusal_reason(ip_address("::127.0.0.2")) == (
        "loopback (IPv4 127.0.0.2 embedded in IPv6)"
    )


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "127.0.0.1.example.com",
        "1.2.3.4.5",  # five parts: a name, not an address
        "256.0.0.1",  # an octet over 255
        "1.16777216",  # the last part wider than the bytes it fills
        "4294967296",  # past 32 bits
        "08.0.0.1",  # 8 is no octal digit
        "0x1g",
        "1..2",
        "",
    ],
)
def test_what_inet_aton_rejects_is_no_address(host: str) -> None:
    assert parse_ip(host) is None


def test_public_addresses_however_spelled_pass() -> None:
    assert parse_ip("0x5db8d822") == ip_address("93.184.216.34")
    # Sent on in the canonical spelling: the client connects to what was checked.
    assert str(vet_url("https://1572395042/hook", Allowlist())) == "https://93.184.216.34/hook"


def test_allowlist_entries_are_read_as_addresses_however_spelled() -> None:
    assert Allowlist.parse("127.1, 0x0a000001").networks == (
        ip_network("127.0.0.1/32"),
        ip_network("10.0.0.1/32"),
    )
