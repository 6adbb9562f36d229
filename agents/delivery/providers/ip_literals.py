"""Reading a URL host as an IP address the way the C library, curl and browsers read it.

``ipaddress`` accepts only the canonical dotted quad, but ``inet_aton`` (and so
``getaddrinfo``) also reads one to four parts in decimal, octal (a leading ``0``) or hex
(``0x``), the last part filling the remaining bytes: ``127.2``, ``2130706434``,
``0177.0.0.2`` and ``0x7f.1`` are all loopback. A guard that reads them as host names
would let an HTTP client with a more lenient parser connect to them.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address

IPAddress = IPv4Address | IPv6Address

_MAX_PARTS = 4
_OCTET = 0xFF
_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL = re.compile(r"0[0-7]*")
_DECIMAL = re.compile(r"[1-9][0-9]*")


def parse_ip(host: str) -> IPAddress | None:
    """The address ``host`` names however it is spelled, or None when it is a host name.

    Takes IPv6 with or without brackets, with a zone id (``fe80::1%eth0``, dropped) and
    with a trailing IPv4 part in any of inet_aton's spellings; and IPv4 in all of them,
    with or without the trailing dot of a fully qualified name.
    """
    text = host.strip().removeprefix("[").removesuffix("]")
    if ":" in text:
        return _parse_ipv6(text.split("%", 1)[0])
    return inet_aton(text.removesuffix("."))


def inet_aton(text: str) -> IPv4Address | None:
    """The IPv4 address ``inet_aton`` reads from ``text``, or None if it reads none.

    Unlike glibc's, it takes nothing after the number (glibc stops at whitespace and
    ignores the rest), so the answer does not depend on the platform.
    """
    parts = text.split(".")
    if len(parts) > _MAX_PARTS:
        return None
    numbers = [_number(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    *leading, last = [number for number in numbers if number is not None]
    if any(number > _OCTET for number in leading):
        return None
    # "127.1": the last part fills the three bytes the leading ones left.
    remaining_bits = 8 * (_MAX_PARTS - len(leading))
    if last >= 1 << remaining_bits:
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (_MAX_PARTS - 1 - index))
    return IPv4Address(value)


def _number(part: str) -> int | None:
    if _HEX.fullmatch(part):
        # inet_aton reads a bare "0x" as zero.
        return int(part[2:] or "0", 16)
    if _OCTAL.fullmatch(part):
        return int(part, 8)
    if _DECIMAL.fullmatch(part):
        return int(part)
    return None


def _parse_ipv6(text: str) -> IPv6Address | None:
    head, _, tail = text.rpartition(":")
    if "." in tail:
        # "::ffff:0177.0.0.1": the embedded IPv4 part may be spelled like any other.
        embedded = inet_aton(tail)
        if embedded is None:
            return None
        text = f"{head}:{embedded}"
    try:
        return IPv6Address(text)
    except ValueError:
        return None
