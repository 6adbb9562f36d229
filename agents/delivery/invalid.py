"""The invalid record for a delivery-side message that could not be handled."""

from __future__ import annotations

from typing import Any

from agents.records_out import OutputWriter, utc_iso
from schemas.clock import Clock
from schemas.structs import OutRecord


def invalid_delivery(writer: OutputWriter, clock: Clock, message: Any, exc: Exception) -> OutRecord:
    """The invalid record for a message that could not be handled: Faust's message or
    aiokafka's record, both have ``topic``, ``partition``, ``offset``, ``key`` and ``value``."""
    return writer.invalid(
        raw=message.value,
        key=message.key,
        error=f"could not deliver: {exc!r}",
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        at=utc_iso(clock()),
    )
