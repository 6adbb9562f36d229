"""Which events a user already sent, for ``CLARION_DEDUPE_WINDOW`` seconds.

Entries are ``[first_seen, partition, offset]`` under ``user␟e␟event_id`` and
``user␟k␟dedupe_key``. The partition and offset let a replay of the very same message after
a crash (whose output transaction was aborted) be told apart from a true duplicate. An event
that came through the repartition topic is remembered as ``[first_seen, partition, offset,
"repartition"]``: its offset counts in another topic, and must not be taken for the event at
the same offset of the events topic (entries written before there was a repartition topic
have three fields and still mean the events topic).

The ledger writes the local store only; the entries :meth:`DedupeLedger.record` returns go
to the table's changelog in one batch per commit, because Faust's one changelog message per
write costs more than the rest of routing. Entries expire: reads ignore anything older than
the window, the changelog deletes segments older than twice the window, and
:func:`prune_expired` drops them from the local store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_SEP = "\x1f"

# Where the event that created an entry was read: (partition, offset) on the events topic,
# (partition, offset, REPARTITIONED) on the repartition topic.
Source = tuple[int, int] | tuple[int, int, str]
REPARTITIONED = "repartition"


@dataclass(frozen=True, slots=True)
class Duplicate:
    reason: str


def _keys(user_id: str, event_id: str, dedupe_key: str | None) -> Iterator[tuple[str, str]]:
    yield f"{user_id}{_SEP}e{_SEP}{event_id}", f"event_id {event_id!r}"
    if dedupe_key:
        yield f"{user_id}{_SEP}k{_SEP}{dedupe_key}", f"dedupe_key {dedupe_key!r}"


@dataclass(frozen=True, kw_only=True, slots=True)
class DedupeLedger:
    table: MutableMapping[str, list[Any]]
    window: float

    def check(
        self,
        *,
        user_id: str,
        event_id: str,
        dedupe_key: str | None,
        source: Source,
        now: float,
    ) -> Duplicate | None:
        """A reason when the event repeats one seen within the window, else None."""
        for key, label in _keys(user_id, event_id, dedupe_key):
            entry = self.table.get(key)
            if entry is None:
                continue
            first_seen, *where = entry
            if now - first_seen < self.window and tuple(where) != source:
                seen = datetime.fromtimestamp(first_seen, UTC).isoformat(timespec="seconds")
                return Duplicate(f"{label} was already accepted for this user at {seen}")
        return None

    def record(
        self,
        *,
        user_id: str,
        event_id: str,
        dedupe_key: str | None,
        source: Source,
        now: float,
    ) -> list[tuple[str, list[Any]]]:
        """Remember the event; return the entries written, for the changelog."""
        written: list[tuple[str, list[Any]]] = []
        for key, _ in _keys(user_id, event_id, dedupe_key):
            entry = self.table.get(key)
            # A replay of the same message keeps its first entry: one changelog write, not two.
            if entry is None or tuple(entry[1:]) != source:
                value = [now, *source]
                self.table[key] = value
                written.append((key, value))
        return written


def changelog_config(window: float) -> dict[str, str]:
    """Let Kafka delete changelog segments once every entry in them has expired."""
    return {
        "cleanup.policy": "compact,delete",
        "retention.ms": str(int(window * 2 * 1000)),
    }


def is_expired(entry: list[Any], *, window: float, now: float) -> bool:
    return bool(now - entry[0] >= window)


async def prune_expired(
    store: MutableMapping[str, list[Any]], *, window: float, now: float, chunk: int = 1000
) -> int:
    """Delete expired entries from the local store; return how many went.

    Local only: Kafka already deletes them from the changelog by retention. Yields to the
    event loop every ``chunk`` entries so a large store does not stall the agents, and
    re-reads each entry before deleting it, because the ingest agent may have renewed it
    in the meantime.
    """
    candidates: list[str] = []
    for seen, (key, entry) in enumerate(store.items(), start=1):
        if is_expired(entry, window=window, now=now):
            candidates.append(key)
        if seen % chunk == 0:
            await asyncio.sleep(0)
    pruned = 0
    for key in candidates:
        current = store.get(key)
        if current is not None and is_expired(current, window=window, now=now):
            del store[key]
            pruned += 1
    return pruned
