"""Which events a user already sent, for ``CLARION_DEDUPE_WINDOW`` seconds.

Entries are ``[first_seen, partition, offset]`` under ``user␟e␟event_id`` and
``user␟k␟dedupe_key``, rows of a :class:`~tables.txstore.TransactionalTable` whose changelog
commits in the partition's checkpoint with the output of the event that wrote them. The
partition and offset let a replay of the very same message (after a crash before its
checkpoint, or a rebalance) be told apart from a true duplicate. An event that came through
the repartition topic is remembered as ``[first_seen, partition, offset, "repartition"]``: its
offset counts in another topic, and must not be taken for the event at the same offset of the
events topic.

Entries expire: reads ignore anything older than the window, and :meth:`DedupeLedger.expired`
finds old entries through the table's index (first-seen time first), so the checkpoint can
delete them from the changelog and the local store alike, without a scan.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from schemas.structs import OutRecord
from tables.txstore import TransactionalTable

_SEP = "\x1f"
_SEEN_BYTES = 8

# Where the event that created an entry was read: (partition, offset) on the events topic,
# (partition, offset, REPARTITIONED) on the repartition topic.
Source = tuple[int, int] | tuple[int, int, str]
REPARTITIONED = "repartition"


@dataclass(frozen=True, slots=True)
class Duplicate:
    reason: str


def _keys(user_id: str, event_id: str, dedupe_key: str | None) -> Iterable[tuple[bytes, str]]:
    yield f"{user_id}{_SEP}e{_SEP}{event_id}".encode(), f"event_id {event_id!r}"
    if dedupe_key:
        yield f"{user_id}{_SEP}k{_SEP}{dedupe_key}".encode(), f"dedupe_key {dedupe_key!r}"


def seen_index(key: bytes, value: bytes) -> bytes:
    """Index entry ``<first_seen ms><key>``: the oldest entries come first."""
    first_seen = orjson.loads(value)[0]
    return int(first_seen * 1000).to_bytes(_SEEN_BYTES, "big") + key


@dataclass(frozen=True, kw_only=True, slots=True)
class DedupeLedger:
    table: TransactionalTable
    window: float

    def _entry(self, partition: int, key: bytes) -> list[Any] | None:
        raw = self.table.get(partition, key)
        return None if raw is None else list(orjson.loads(raw))

    def check(
        self,
        partition: int,
        *,
        user_id: str,
        event_id: str,
        dedupe_key: str | None,
        source: Source,
        now: float,
    ) -> Duplicate | None:
        """A reason when the event repeats one seen within the window, else None."""
        for key, label in _keys(user_id, event_id, dedupe_key):
            entry = self._entry(partition, key)
            if entry is None:
                continue
            first_seen, *where = entry
            if now - first_seen < self.window and tuple(where) != source:
                seen = datetime.fromtimestamp(first_seen, UTC).isoformat(timespec="seconds")
                return Duplicate(f"{label} was already accepted for this user at {seen}")
        return None

    def record(
        self,
        partition: int,
        *,
        user_id: str,
        event_id: str,
        dedupe_key: str | None,
        source: Source,
        now: float,
    ) -> list[OutRecord]:
        """The changelog records remembering the event; stage them with its output."""
        written: list[OutRecord] = []
        for key, _ in _keys(user_id, event_id, dedupe_key):
            entry = self._entry(partition, key)
            # A replay of the same message keeps its first entry: one changelog write, not two.
            if entry is None or tuple(entry[1:]) != source:
                written.append(self.table.put(partition, key, orjson.dumps([now, *source])))
        return written

    def expired(self, partition: int, *, now: float, limit: int = 1000) -> list[OutRecord]:
        """Deletions of up to ``limit`` entries older than the window, oldest first."""
        below = int((now - self.window) * 1000).to_bytes(_SEEN_BYTES, "big")
        deletions: list[OutRecord] = []
        for index_key in self.table.index_range(partition, below, limit):
            key = index_key[_SEEN_BYTES:]
            entry = self._entry(partition, key)
            # The index lags pending writes: the entry may have been renewed since.
            if entry is not None and now - entry[0] >= self.window:
                deletions.append(self.table.delete(partition, key))
        return deletions
