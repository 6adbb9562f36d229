"""What rejecting an input record publishes: the record on the invalid topic and its status."""

from __future__ import annotations

from agents.records_out import OutputWriter
from schemas.structs import OutRecord, SourceMessage


def rejection(
    writer: OutputWriter,
    message: SourceMessage,
    reason: str,
    at: str,
    *,
    event_id: str | None,
    user_id: str | None,
) -> list[OutRecord]:
    """The record on the invalid topic, with its reason, and a ``rejected`` status."""
    invalid = writer.invalid(
        raw=message.value,
        key=message.key,
        error=reason,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        at=at,
    )
    status = writer.status(
        notification_id=event_id or f"invalid:{message.topic}:{message.partition}:{message.offset}",
        status="rejected",
        at=at,
        event_ids=[event_id] if event_id else [],
        user_id=user_id,
        reason=reason,
    )
    return [invalid, status]
