"""Byte keys built from parts, for RocksDB rows that are scanned by prefix."""

from __future__ import annotations


def part(value: str | bytes) -> bytes:
    """A length-prefixed part: no value can pass for a prefix of another."""
    raw = value.encode() if isinstance(value, str) else value
    return len(raw).to_bytes(2, "big") + raw
