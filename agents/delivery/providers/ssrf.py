"""Keeps webhook deliveries away from the worker's own network (SSRF guard).

Webhook URLs come from user preferences, so anyone who can set one could otherwise
make the worker POST to its broker, a cloud metadata service or an admin port.

Two checks, both needed:

* :func:`vet_url` refuses non-HTTP schemes and IP-literal hosts that are not public.
  aiohttp never calls the resolver for IP literals, so they must be checked here, in
  every spelling ``inet_aton`` reads (``127.2``, ``2130706434``, ``0177.0.0.2``; see
  :mod:`agents.delivery.providers.ip_literals`), and the URL goes on with the canonical
  spelling, so the client connects to exactly the address that was checked.
* :class:`GuardedResolver` is the resolver of the webhook session's connector: it
  resolves a host name and refuses the whole answer if any address is not public. The
  connection is then made to exactly the addresses it vetted, so a DNS answer that
  changes between a check and the connection (DNS rebinding) cannot slip through.

Hosts and CIDRs in the allowlist (``CLARION_WEBHOOK_ALLOWED_HOSTS``) bypass the check,
e.g. the local dev receiver on 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from agents.delivery.providers.base import (
    InvalidAddressError,
    PermanentDeliveryError,
    RefusedDestinationError,
)
from agents.delivery.providers.ip_literals import parse_ip

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})
# RFC 6052 well-known NAT64 prefix: a gateway would forward these to the embedded IPv4.
_NAT64 = IPv6Network("64:ff9b::/96")
# RFC 4291's deprecated IPv4-compatible addresses (::a.b.c.d); :: and ::1 are not such.
_IPV4_COMPATIBLE = IPv6Network("::/96")
_HOSTNAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


def _normalize_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


@dataclass(frozen=True, slots=True)
class Allowlist:
    """Host names (exact match) and networks that webhooks may reach even if not public."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: str | Iterable[str]) -> Allowlist:
        """From a comma list such as ``"127.0.0.1, hooks.internal, 10.0.0.0/8"``.

        Raises ``ValueError`` naming the first entry that is neither a CIDR, an
        address nor a host name.
        """
        items = entries.split(",") if isinstance(entries, str) else entries
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in items:
            entry = raw.strip()
            if not entry:
                continue
            try:
                networks.append(ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            if (ip := parse_ip(entry)) is not None:
                # "127.1" is an address, not a host name, however it is spelled.
                networks.append(ip_network(ip))
                continue
            host = _normalize_host(entry)
            if not _HOSTNAME.fullmatch(host):
                raise ValueError(f"{entry!r} is neither a host name, an IP address nor a CIDR")
            hosts.add(host)
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def allows_host(self, host: str) -> bool:
        return _normalize_host(host) in self.hosts

    def allows_address(self, ip: IPAddress) -> bool:
        candidates = [ip]
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            candidates.append(embedded)
        return any(
            candidate in network
            for candidate in candidates
            for network in self.networks
            if candidate.version == network.version
        )


def _embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 one stands for, where the network would route to it."""
    if isinstance(ip, IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def refusal_reason(ip: IPAddress) -> str | None:
    """Why a webhook must not reach ``ip`` (e.g. ``"loopback"``), or ``None`` if public."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        inner = refusal_reason(embedded)
        if inner is not None:
            return f"{inner} (IPv4 {embedded} embedded in IPv6)"
    # Most specific first: 127.0.0.1 is also "private" but "loopback" says more.
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_reserved, "reserved"),
        (ip.is_private, "private"),
        (not ip.is_global, "non-global"),
    )
    return next((label for refused, label in checks if refused), None)


def vet_address(host: str, address: str, allowlist: Allowlist) -> None:
    """Raise :class:`RefusedDestinationError` unless ``address`` (of ``host``) may be used."""
    ip = parse_ip(address)
    if ip is None:
        # A resolver answers with addresses; anything else is not something to connect to.
        raise RefusedDestinationError(f"webhook refused: {address!r} is not an IP address")
    if allowlist.allows_host(host) or allowlist.allows_address(ip):
        return
    reason = refusal_reason(ip)
    if reason is not None:
        shown = f"{host!r} resolves to" if host != address else "host is"
        raise RefusedDestinationError(
            f"webhook refused: {shown} {reason} address {ip}; "
            "list it in CLARION_WEBHOOK_ALLOWED_HOSTS to allow it"
        )


def vet_url(url: str | URL, allowlist: Allowlist) -> URL:
    """Parse a webhook URL once (the same parse aiohttp will use) and check what we can.

    Raises :class:`InvalidAddressError` for a malformed URL, a scheme other than
    http(s) or a missing host, and :class:`PermanentDeliveryError` for a refused IP
    literal. Host names are checked later, by :class:`GuardedResolver`.
    """
    address = str(url)
    try:
        parsed = url if isinstance(url, URL) else URL(url)
    except ValueError as exc:
        raise InvalidAddressError(address, f"invalid webhook URL: {exc}") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise InvalidAddressError(
            address, f"webhook URL scheme {parsed.scheme!r} is not http or https"
        )
    host = parsed.host
    if not host:
        raise InvalidAddressError(address, "webhook URL has no host")
    ip = parse_ip(host)
    if ip is None:
        if not _HOSTNAME.fullmatch(_normalize_host(parsed.raw_host or host)):
            raise InvalidAddressError(address, f"webhook URL host {host!r} is not a host name")
        return parsed
    try:
        vet_address(host, host, allowlist)
    except RefusedDestinationError as exc:
        raise PermanentDeliveryError(str(exc)) from exc
    if "%" in host:
        return parsed  # keeps the zone id a link-local address needs, once allowed
    return parsed.with_host(str(ip))


class GuardedResolver(AbstractResolver):
    """Resolves with ``inner`` (getaddrinfo by default), refusing non-public answers."""

    def __init__(self, allowlist: Allowlist, *, inner: AbstractResolver | None = None) -> None:
        self._allowlist = allowlist
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:
            # ThreadedResolver wraps loop.getaddrinfo and binds the running loop.
            self._inner = aiohttp.ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        for result in results:
            # One bad address refuses the host: a name mixing public and internal
            # answers is more likely an attack than a misconfiguration.
            vet_address(host, result["host"], self._allowlist)
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


def guarded_connector(
    allowlist: Allowlist, *, resolver: AbstractResolver | None = None
) -> aiohttp.TCPConnector:
    """A connector that only ever connects to addresses :class:`GuardedResolver` vetted."""
    return aiohttp.TCPConnector(resolver=GuardedResolver(allowlist, inner=resolver))
