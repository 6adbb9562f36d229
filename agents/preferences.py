"""Keep the preferences store current from the compacted preferences topic.

The store is partitioned like the events: a user's preferences must be written from the
partition murmur2 of their key chooses, or the events of that user, routed there, would not
find them. A record found on another partition (a producer on another partitioner) is
forwarded unchanged, tombstones included, to that partition of the preferences repartition
topic, which the route runtime reads too; there it is applied like any other.

Exactly once: a record's state change, its forward, or its invalid record and status, commit
in the partition's checkpoint with the record's offset (pipeline/runtime/route.py), together
or not at all. A crash replays the uncommitted records, applying the same values again.

Order: updates of a user that reach the table by one path keep the order of their source
partition (a producer on one partitioner puts them all on one partition; forwards of one
source partition go to one destination partition through one idempotent producer, in order).
Updates reaching it by both paths, from producers on different partitioners, are applied in
the order they arrive, and the forwarded ones arrive one hop late: a correctly placed update
published just after a misplaced one can be overwritten by it.

"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from agents.records_out import OutputWriter, utc_iso
from agents.rejections import rejection
from schemas.message_keys import user_id_of_key
from schemas.partitioner import partition_for_key
from schemas.records import UserPreferences
from schemas.structs import OutRecord, SourceMessage
from schemas.validation import Invalid, parse_preferences
from tables.preferences import PreferencesStore


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


@dataclass(kw_only=True, slots=True)
class PreferencesUpdater:
    """One preferences record in, its state change (staged) or forward or rejection out."""

    store: PreferencesStore
    writer: OutputWriter
    # Told of every user whose preferences changed: their held notifications are judged again.
    on_changed: Callable[[int, str], None]
    clock: Callable[[], datetime]
    max_bytes: int
    partitions: int
    repartition_topic: str

    def process(self, message: SourceMessage) -> list[OutRecord]:
        verdict = judge(
            message,
            max_bytes=self.max_bytes,
            partitions=self.partitions,
            repartition_topic=self.repartition_topic,
        )
        if isinstance(verdict, Store):
            stored = message.value if verdict.preferences is not None else None
            change = self.store.put(verdict.user_id, stored)
            self.store.table.stage(message.partition, [change])
            self.on_changed(message.partition, verdict.user_id)
            return [change]
        if isinstance(verdict, Forward):
            assert message.key is not None  # judge forwards only records naming a user
            forward = self.writer.forward(
                topic=self.repartition_topic,
                key=message.key,
                value=message.value,
                from_topic=message.topic,
            )
            return [forward]
        at = utc_iso(self.clock())
        return rejection(
            self.writer, message, verdict.reason, at, event_id=None, user_id=verdict.user_id
        )
