"""Plain types shared by every layer: a record to produce and the record being consumed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["DEFAULT_MAX_RECORD_BYTES", "OutRecord", "SourceMessage", "record_size"]

# Below the broker's default message.max.bytes (1,048,588) with room for the record's framing.
DEFAULT_MAX_RECORD_BYTES = 1_000_000


class OutRecord(NamedTuple):
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None


def record_size(record: OutRecord) -> int:
    """What a record weighs against the broker's limit, framing aside."""
    return len(record.key or b"") + len(record.value or b"")


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
