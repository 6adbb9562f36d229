"""The preferences store and the quiet-hours view derived from it.

One table, keyed by user_id and co-partitioned with the events topic, holds each user's
:class:`UserPreferences`; the quiet-hours view is a projection of it rather than a second
table, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import time
from typing import Protocol

import orjson

from schemas.partitioner import partition_for_key
from schemas.records import UserPreferences
from schemas.structs import OutRecord
from tables.txstore import TransactionalTable


@dataclass(frozen=True, slots=True)
class QuietHoursView:
    user_id: str
    timezone: str
    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


def quiet_hours_of(preferences: UserPreferences | None) -> QuietHoursView | None:
    if preferences is None or preferences.quiet_hours is None:
        return None
    quiet = preferences.quiet_hours
    return QuietHoursView(
        user_id=preferences.user_id,
        timezone=preferences.timezone or "UTC",
        start=time.fromisoformat(quiet.start),
        end=time.fromisoformat(quiet.end),
    )


class PreferencesLookup(Protocol):
    """What routing asks of the preferences: a user's, or None when they have none."""

    def get(self, user_id: str, /) -> UserPreferences | None: ...


# Decoded preferences kept per worker; a user's entry is reused while the stored bytes are
# unchanged, so an event costs a lookup and a comparison instead of a JSON decode.
_DECODED_LIMIT = 100_000


@dataclass(kw_only=True, slots=True)
class PreferencesStore:
    """Each user's preferences, rows of a transactional table in the user's partition.

    Values are the validated bytes of the user's latest preferences record; a tombstone
    deletes the row. Reads go to the user's own partition (murmur2 of the user id), which is
    where every event of theirs is routed.
    """

    table: TransactionalTable
    partitions: int
    _decoded: dict[str, tuple[bytes, UserPreferences]] = field(default_factory=dict)

    def partition_of(self, user_id: str) -> int:
        return partition_for_key(user_id.encode(), self.partitions)

    def get(self, user_id: str) -> UserPreferences | None:
        raw = self.table.get(self.partition_of(user_id), user_id.encode())
        if raw is None:
            return None
        cached = self._decoded.get(user_id)
        if cached is not None and cached[0] == raw:
            return cached[1]
        preferences: UserPreferences = UserPreferences.from_data(orjson.loads(raw))
        if len(self._decoded) >= _DECODED_LIMIT:
            self._decoded.clear()
        self._decoded[user_id] = (raw, preferences)
        return preferences

    def holds(self, user_id: str) -> bool:
        """Whether this worker owns (and has recovered) the user's partition."""
        return self.table.is_ready(self.partition_of(user_id))

    def put(self, user_id: str, raw: bytes | None) -> OutRecord:
        """The changelog record storing ``raw`` (None deletes); stage it with its output."""
        partition, key = self.partition_of(user_id), user_id.encode()
        if raw is None:
            return self.table.delete(partition, key)
        return self.table.put(partition, key, raw)
