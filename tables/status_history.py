"""The status table: each notification's history.

Pure functions from one table value to the next, never mutating their argument (a Faust
table only sees a change when its key is assigned). When nothing changes the argument itself
is returned, so a caller can skip the write with ``if new is not old``.

The history of a notification_id, from ``clarion.status``::

    {"notification_id", "user_id", "channel", "event_ids",
     "entries": [{"status", "reason", "at"}, ...]}   # in arrival order

The identifying fields are stored once rather than per entry: a digest's event_ids can be
long, and they do not change between statuses.

:class:`StatusHistories` keeps them in a transactional table: a history changes in the
checkpoint of the status record that changed it. Each user's notification list, for
``GET /users/{user_id}/notifications``, is kept in the timers table instead
(:mod:`tables.user_notifications`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, cast

import orjson

from schemas.partitioner import partition_for_key
from schemas.structs import OutRecord
from tables.txstore import TransactionalTable

DEFAULT_MAX_ENTRIES = 50

TERMINAL_STATUSES: frozenset[str] = frozenset(
    {
        "sent",
        "failed",
        "dead_lettered",
        "expired",
        "suppressed",
        "duplicate",
        "rejected",
        "delivered",
        "read",
    }
)


class StatusEntry(TypedDict):
    status: str
    reason: str | None
    at: str


class StatusHistory(TypedDict):
    notification_id: str
    user_id: str | None
    channel: str | None
    event_ids: list[str]
    entries: list[StatusEntry]


def append_status(
    history: StatusHistory | None,
    change: Mapping[str, Any],
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
) -> StatusHistory:
    """``history`` with the StatusChange ``change`` appended.

    A change equal to one already recorded (same status, at and reason) is a replayed
    record, and leaves the history as it is. Beyond ``max_entries`` the oldest entries go;
    a notification only gets that many through long retry sequences.
    """
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, not {max_entries!r}")
    entry: StatusEntry = {
        "status": change["status"],
        "reason": change["reason"],
        "at": change["at"],
    }
    if history is None:
        return {
            "notification_id": change["notification_id"],
            "user_id": change["user_id"],
            "channel": change["channel"],
            "event_ids": list(change["event_ids"]),
            "entries": [entry],
        }
    if history["notification_id"] != change["notification_id"]:
        raise ValueError(
            f"status of {change['notification_id']!r} given for {history['notification_id']!r}"
        )
    if entry in history["entries"]:
        return history
    return {
        "notification_id": history["notification_id"],
        # Event-level statuses (accepted, rejected) may not know what later ones do.
        "user_id": history["user_id"] or change["user_id"],
        "channel": history["channel"] or change["channel"],
        "event_ids": _merged(history["event_ids"], change["event_ids"]),
        "entries": [*history["entries"], entry][-max_entries:],
    }


def current_status(history: StatusHistory | None) -> str | None:
    """The status that arrived last, or None for an unknown notification."""
    if history is None or not history["entries"]:
        return None
    return history["entries"][-1]["status"]


def is_terminal(status: str | None) -> bool:
    """Whether nothing more will happen to the notification, save a provider's report."""
    return status in TERMINAL_STATUSES


def _merged(known: list[str], more: list[str]) -> list[str]:
    extra = [event_id for event_id in more if event_id not in known]
    return [*known, *extra] if extra else known


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusHistories:
    """Histories by notification_id, in the partition its status records are keyed to."""

    table: TransactionalTable
    partitions: int
    max_entries: int = DEFAULT_MAX_ENTRIES

    def get(self, notification_id: str) -> StatusHistory | None:
        """From this worker's copy; raises NotReadyError for a partition it does not hold."""
        key = notification_id.encode()
        raw = self.table.get(partition_for_key(key, self.partitions), key)
        return None if raw is None else cast(StatusHistory, orjson.loads(raw))

    def append(self, partition: int, change: Mapping[str, Any]) -> list[OutRecord]:
        """The changelog record (staged) of ``change`` appended; none for a replayed change."""
        key = str(change["notification_id"]).encode()
        raw = self.table.get(partition, key)
        history = None if raw is None else cast(StatusHistory, orjson.loads(raw))
        updated = append_status(history, change, max_entries=self.max_entries)
        if updated is history:
            return []
        written = [self.table.put(partition, key, orjson.dumps(updated))]
        self.table.stage(partition, written)
        return written
