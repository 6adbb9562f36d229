"""Everything that waits, as rows of one transactional table (contract, routing rules 4-6).

Three kinds of rows, all keyed by user first so a user's rows sit together:

* ``held``: one event waiting for its ``send_at``, the end of quiet hours or a free slot under
  a frequency cap, with the channels it is still owed (None: whatever the user has then);
* ``digest``: the header of one user's digest window, due when the window closes;
* ``item``: one event in a digest window, ordered by arrival;
* ``sent``: the recent individual sends per user and channel, for frequency caps;
* ``retry``: a Delivery waiting for its ``not_before`` after a failed attempt;
* ``notification``: the user's notification list for the web views (tables/user_notifications).

``held``, ``digest`` and ``retry`` rows carry a ``due`` time in milliseconds; the table indexes
them by it so the sweep finds what is due without holding anything per user in memory. Keys are
built from length-prefixed parts, so no user id can be mistaken for another's prefix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.structs import OutRecord
from tables.keys import part
from tables.txstore import TransactionalTable
from tables.user_notifications import NOTIFICATION

HELD = b"h"
DIGEST = b"g"
ITEM = b"t"
SENT = b"s"
RETRY = b"r"
_DUE_KINDS = (HELD, DIGEST, RETRY, NOTIFICATION)
_DUE_BYTES = 8


def held_key(user_id: str, event_id: str) -> bytes:
    return HELD + part(user_id) + part(event_id)


def digest_key(user_id: str, window_start_ms: int) -> bytes:
    return DIGEST + part(user_id) + window_start_ms.to_bytes(8, "big")


def item_prefix(user_id: str, window_start_ms: int) -> bytes:
    return ITEM + part(user_id) + window_start_ms.to_bytes(8, "big")


def item_key(user_id: str, window_start_ms: int, arrival_ms: int, sequence: int) -> bytes:
    return (
        item_prefix(user_id, window_start_ms)
        + arrival_ms.to_bytes(8, "big")
        + sequence.to_bytes(8, "big", signed=True)
    )


def sent_key(user_id: str, channel: str) -> bytes:
    return SENT + part(user_id) + part(channel)


def retry_key(user_id: str, notification_id: str) -> bytes:
    return RETRY + part(user_id) + part(notification_id)


def user_prefix(kind: bytes, user_id: str) -> bytes:
    return kind + part(user_id)


def due_index(key: bytes, value: bytes) -> bytes | None:
    """Index entry ``<due ms><key>`` for rows that wait; everything else is not indexed."""
    if key[:1] not in _DUE_KINDS:
        return None
    due = orjson.loads(value)["due"]
    return int(due).to_bytes(_DUE_BYTES, "big") + key


@dataclass(frozen=True, slots=True)
class DueRow:
    key: bytes
    kind: bytes
    value: dict[str, Any]


@dataclass(kw_only=True, slots=True)
class TimerTable:
    """Typed access to the timers table; every write returns its changelog record."""

    table: TransactionalTable

    def get(self, partition: int, key: bytes) -> dict[str, Any] | None:
        raw = self.table.get(partition, key)
        return None if raw is None else orjson.loads(raw)

    def put(self, partition: int, key: bytes, value: dict[str, Any]) -> OutRecord:
        return self.table.put(partition, key, orjson.dumps(value))

    def delete(self, partition: int, key: bytes) -> OutRecord:
        return self.table.delete(partition, key)

    def stage(self, partition: int, records: list[OutRecord]) -> None:
        self.table.stage(partition, records)

    def rows(
        self, partition: int, prefix: bytes, *, after: bytes | None = None
    ) -> Iterator[tuple[bytes, dict[str, Any]]]:
        for key, raw in self.table.scan(partition, prefix, after=after):
            yield key, orjson.loads(raw)

    def due(self, partition: int, now_ms: int, limit: int) -> list[DueRow]:
        """Rows due at ``now_ms``, earliest first, as they stand now (pending writes included)."""
        below = (now_ms + 1).to_bytes(_DUE_BYTES, "big")
        rows: list[DueRow] = []
        for index_key in self.table.index_range(partition, below, limit):
            key = index_key[_DUE_BYTES:]
            value = self.get(partition, key)
            # The index lags pending writes: the row may be gone or rescheduled since.
            if value is not None and value["due"] <= now_ms:
                rows.append(DueRow(key=key, kind=key[:1], value=value))
        return rows
