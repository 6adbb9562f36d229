"""The invalid record for a message a core could not handle (not an event: those are rejected
with a status too, agents/rejections.py)."""

from __future__ import annotations

from typing import Any

from agents.records_out import OutputWriter, utc_iso
from schemas.clock import Clock
from schemas.structs import OutRecord


def invalid_message(writer: OutputWriter, clock: Clock, message: Any, error: str) -> OutRecord:
    """``message``: Faust's, aiokafka's or a SourceMessage; all have ``topic``, ``partition``,
    ``offset``, ``key`` and ``value``."""
    return writer.invalid(
        raw=message.value,
        key=message.key,
        error=error,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        at=utc_iso(clock()),
    )


def invalid_delivery(writer: OutputWriter, clock: Clock, message: Any, exc: Exception) -> OutRecord:
    return invalid_message(writer, clock, message, f"could not deliver: {exc!r}")
