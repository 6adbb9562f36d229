"""Keep the preferences table current from the compacted preferences topic."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import TYPE_CHECKING

from agents.records_out import utc_iso
from schemas.records import UserPreferences
from schemas.validation import Invalid, parse_preferences

if TYPE_CHECKING:
    from pipeline.app import Clarion

logger = logging.getLogger(__name__)


def register_preferences(clarion: Clarion) -> None:
    app = clarion.app
    table = clarion.preferences_table
    writer = clarion.writer
    topic_name = clarion.preferences_topic.get_topic_name()
    max_bytes = clarion.settings.max_event_bytes
    sweeper = clarion.sweeper

    @app.agent(clarion.preferences_topic, name="clarion.preferences")
    async def preferences(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            message = event.message
            user_id = message.key.decode("utf-8", "replace") if message.key else None
            error = _apply(table, user_id, message.value, max_bytes)
            if error is None:
                if user_id:
                    # Held notifications are judged again under the new preferences.
                    sweeper.touch(message.partition, user_id)
                continue
            invalid = writer.invalid(
                raw=message.value,
                key=message.key,
                error=error,
                topic=topic_name,
                partition=message.partition,
                offset=message.offset,
                at=utc_iso(clarion.clock()),
            )
            await app.producer.send(
                invalid.topic, invalid.key, invalid.value, invalid.partition, None, None
            )


def _apply(
    table: MutableMapping[str, UserPreferences],
    user_id: str | None,
    raw: bytes | None,
    max_bytes: int,
) -> str | None:
    """Apply one preferences message to the table; the reason when it cannot be applied."""
    if not user_id:
        return "preferences must be keyed by user_id; the message has no key"
    if raw is None:
        # A tombstone: the user is gone, and so are their preferences.
        table.pop(user_id, None)
        return None
    parsed = parse_preferences(raw, max_bytes=max_bytes)
    if isinstance(parsed, Invalid):
        return parsed.reason
    if parsed.user_id != user_id:
        return (
            f"message key {user_id!r} does not match user_id {parsed.user_id!r}; "
            "preferences must be keyed by user_id"
        )
    table[user_id] = parsed
    return None
