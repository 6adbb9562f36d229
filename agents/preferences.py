"""Keep the preferences table current from the compacted preferences topic.

The table is partitioned like the events: a user's preferences must be written from the
partition murmur2 of their key chooses, or the events of that user, routed there, would not
find them. A record found on another partition (a producer on another partitioner) is
forwarded unchanged, tombstones included, to that partition of the preferences repartition
topic, which this agent reads too; there it is applied like any other. Faust writes the table's
changelog on the partition of the record being processed, so the table, and its recovery
from the changelog, only ever hold a user in their own partition.

Exactly once: every record's output (a forward, or an invalid record and its status) goes to
the transactional outbox with the record's offset, so a forward and the offset that consumed
its source commit together or not at all; table writes, which go through Faust's producer,
are flushed before that commit (``flush_elsewhere`` in pipeline/app.py). A crash replays the
uncommitted records, applying the same values again.

Order: updates of a user that reach the table by one path keep the order of their source
partition (a producer on one partitioner puts them all on one partition; forwards of one
source partition go to one destination partition through one idempotent producer, in order).
Updates reaching it by both paths, from producers on different partitioners, are applied in
the order they arrive, and the forwarded ones arrive one hop late: a correctly placed update
published just after a misplaced one can be overwritten by it.

Misplaced records a worker of an earlier version already wrote to the wrong partition's table
stay there, unused by routing: publishing the user's preferences again puts them where they
belong.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agents.ingest import commit_or_crash
from agents.records_out import utc_iso
from agents.rejections import SourceMessage, rejection
from pipeline.kafka.outbox import OutRecord
from pipeline.kafka.partitioner import partition_for_key
from schemas.message_keys import user_id_of_key
from schemas.records import UserPreferences
from schemas.validation import Invalid, parse_preferences

if TYPE_CHECKING:
    from pipeline.app import Clarion

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Store:
    """Write the user's preferences; None (a tombstone) deletes the user."""

    user_id: str
    preferences: UserPreferences | None


@dataclass(frozen=True, slots=True)
class Forward:
    """The record is off its user's partition: send it on to the repartition topic."""


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    user_id: str | None


def judge(
    message: SourceMessage, *, max_bytes: int, partitions: int, repartition_topic: str
) -> Store | Forward | Reject:
    """What to do with one preferences record, from any of the two topics."""
    user_id = user_id_of_key(message.key)
    if isinstance(user_id, Invalid):
        return Reject(user_id.reason, None)
    preferences: UserPreferences | None = None
    if message.value is not None:
        parsed = parse_preferences(message.value, max_bytes=max_bytes)
        if isinstance(parsed, Invalid):
            return Reject(parsed.reason, user_id)
        if parsed.user_id != user_id:
            reason = (
                f"message key {user_id!r} does not match user_id {parsed.user_id!r}; "
                "preferences must be keyed by user_id"
            )
            return Reject(reason, user_id)
        preferences = parsed
    # Validated first, so an invalid record is reported where its producer put it.
    home = partition_for_key(user_id.encode(), partitions)
    if message.topic != repartition_topic and home != message.partition:
        return Forward()
    return Store(user_id, preferences)


def register_preferences(clarion: Clarion) -> None:
    app = clarion.app
    table = clarion.preferences_table
    writer = clarion.writer
    repartition_topic = clarion.topics.preferences_repartition
    max_bytes = clarion.settings.max_event_bytes
    partitions = clarion.settings.partitions
    sweeper = clarion.sweeper
    outbox = clarion.outbox

    # Reads the preferences topic and its repartition topic (pipeline/app.py).
    @app.agent(clarion.preferences_topic, name="clarion.preferences")
    async def preferences(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            message = event.message
            source = SourceMessage(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value,
            )
            verdict = judge(
                source,
                max_bytes=max_bytes,
                partitions=partitions,
                repartition_topic=repartition_topic,
            )
            records: list[OutRecord] = []
            if isinstance(verdict, Store):
                if verdict.preferences is None:
                    table.pop(verdict.user_id, None)
                else:
                    table[verdict.user_id] = verdict.preferences
                # Held notifications are judged again under the new preferences.
                sweeper.touch(source.partition, verdict.user_id)
            elif isinstance(verdict, Forward):
                assert source.key is not None  # judge forwards only records naming a user
                records = [
                    writer.forward(
                        topic=repartition_topic,
                        key=source.key,
                        value=source.value,
                        from_topic=source.topic,
                    )
                ]
            else:
                at = utc_iso(clarion.clock())
                records = rejection(
                    writer, source, verdict.reason, at, event_id=None, user_id=verdict.user_id
                )
            # In the partition's transaction with this record's offset: forwarded exactly
            # once. Table writes go through Faust's producer, flushed before that commit.
            if outbox.add(source.partition, source.offset, records, topic=source.topic):
                await commit_or_crash(app, outbox.flush(source.partition))
