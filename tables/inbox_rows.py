"""One user's in-app inbox as rows of the inbox table: no row grows with the user's history.

Keys start with a kind byte and the user id as a length-prefixed part (tables.keys), so one
user's rows of a kind sit together and no user id passes for a prefix of another:

* ``s`` + user: the summary ``{"next_seq", "oldest_seq"}``. The items held are the seqs from
  ``oldest_seq`` to ``next_seq - 1``: an item is added at ``next_seq``, and the oldest ones
  are dropped beyond the inbox size;
* ``i`` + user + ``2**63 - seq`` (8 bytes, big-endian): one item without its read mark. The
  inverted seq makes a forward scan newest first, the order pages are read in;
* ``n`` + user + notification_id: ``{"seq", "read_at"}``, which finds a notification's item
  (a redelivery is recognised, a read mark names ids) and holds its read mark, so marking
  read rewrites only these small rows, never the items.

So an item is one changelog record, bounded by tables.inbox.item_from_delivery; an
operation touches one user's rows, and at most the inbox size of them (marking everything
read) or the ids it names.

Writes are ordered so that processing a record again after the worker died midway repairs
what it left: a partition's changelog keeps the order of the writes, and a record not
committed is processed again. Until the summary names it, an item's rows count for nothing
(a notification row with a seq not below ``next_seq`` is a leftover of such an add), and
dropped items go before the summary says so.

Before this layout the table held one JSON value per user, under the user id as Faust
encoded it (``"alice"``, with the quotes). Such a value is read as it is until the user's
inbox is next written, which moves it into rows (:meth:`UserInbox._migrate`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

import orjson
from faust.serializers import codecs

from tables.inbox import (
    InboxItem,
    StoredInboxItem,
    checked_limit,
    decode_cursor,
    encode_cursor,
    feed_page,
)
from tables.keys import part
from tables.rows import Rows

SUMMARY = b"s"
ITEM = b"i"
NOTIFICATION = b"n"
_SEQ_TOP = 2**63
_SEQ_BYTES = 8


class Summary(TypedDict):
    next_seq: int
    oldest_seq: int


class Mark(TypedDict):
    seq: int
    read_at: str | None


def summary_key(user_id: str) -> bytes:
    return SUMMARY + part(user_id)


def item_prefix(user_id: str) -> bytes:
    return ITEM + part(user_id)


def item_key(user_id: str, seq: int) -> bytes:
    return item_prefix(user_id) + (_SEQ_TOP - seq).to_bytes(_SEQ_BYTES, "big")


def notification_prefix(user_id: str) -> bytes:
    return NOTIFICATION + part(user_id)


def notification_key(user_id: str, notification_id: str) -> bytes:
    return notification_prefix(user_id) + part(notification_id)


def legacy_key(user_id: str) -> bytes:
    """The key of the user's whole-inbox value of before rows: Faust's JSON of the user id."""
    return codecs.dumps("json", user_id)


def seq_of(key: bytes) -> int:
    return _SEQ_TOP - int.from_bytes(key[-_SEQ_BYTES:], "big")


@dataclass(frozen=True, slots=True)
class UserInbox:
    rows: Rows
    user_id: str

    # -- writes --------------------------------------------------------------------------

    def add(self, item: InboxItem, *, max_items: int) -> StoredInboxItem | None:
        """Store ``item`` on top, or return None when its notification is there already.

        A redelivered or replayed notification keeps its first copy, with its place and read
        state. Beyond ``max_items`` the oldest items are dropped.
        """
        if max_items < 1:
            raise ValueError(f"max_items must be at least 1, not {max_items!r}")
        summary = self._summary() or self._migrate() or Summary(next_seq=1, oldest_seq=1)
        notification_id = item["notification_id"]
        if self._held_mark(summary, notification_id) is not None:
            return None
        seq = summary["next_seq"]
        stored = _stored({**item, "seq": seq}, read_at=None)
        self._put_item(stored)
        oldest = max(summary["oldest_seq"], seq + 1 - max_items)
        for dropped in range(summary["oldest_seq"], oldest):
            self._drop(dropped)
        self._put_summary(Summary(next_seq=seq + 1, oldest_seq=oldest))
        return stored

    def mark_read(self, notification_ids: Iterable[str] | None, *, at: str) -> int:
        """Mark these items (every item when None) read at ``at``; return how many changed.

        An item already read keeps its first ``read_at``: a client repeating the call, or
        marking everything read, does not rewrite history.
        """
        summary = self._summary() or self._migrate()
        if summary is None:
            return 0
        if notification_ids is None:
            marks = list(self._marks(summary))
        else:
            marks = [
                (notification_key(self.user_id, notification_id), mark)
                for notification_id in dict.fromkeys(notification_ids)
                if (mark := self._held_mark(summary, notification_id)) is not None
            ]
        unread = [(key, mark) for key, mark in marks if mark["read_at"] is None]
        for key, mark in unread:
            self.rows.put(key, orjson.dumps(Mark(seq=mark["seq"], read_at=at)))
        return len(unread)

    # -- reads ---------------------------------------------------------------------------

    def unread(self) -> int:
        summary = self._summary()
        if summary is None:
            legacy = self._legacy()
            items = [] if legacy is None else legacy["items"]
            return sum(1 for entry in items if entry["read_at"] is None)
        return sum(1 for _, mark in self._marks(summary) if mark["read_at"] is None)

    def page(self, limit: int, cursor: str | None = None) -> tuple[list[InboxItem], str | None]:
        """Up to ``limit`` items older than ``cursor`` (from the top when None), newest first.

        Returns the items without their internal seq, and the cursor of the next page, or None
        when there is none.
        """
        limit = checked_limit(limit)
        below = None if cursor is None else decode_cursor(cursor)
        summary = self._summary()
        if summary is None:
            legacy = self._legacy()
            if legacy is None:
                return [], None
            entries, next_cursor = feed_page(legacy, limit, cursor)
            return [_public(entry) for entry in entries], next_cursor
        below = summary["next_seq"] if below is None else min(below, summary["next_seq"])
        items: list[StoredInboxItem] = []
        for stored in self._newest_first(summary, below - 1):
            if len(items) == limit:
                return [_public(i) for i in items], encode_cursor(items[-1]["seq"])
            items.append(stored)
        return [_public(i) for i in items], None

    def after(self, seq: int, limit: int) -> list[StoredInboxItem]:
        """Up to ``limit`` items newer than ``seq``, oldest first (what a stream missed)."""
        summary = self._summary()
        if summary is None:
            legacy = self._legacy()
            items = [] if legacy is None else legacy["items"]
            newer = sorted((e for e in items if e["seq"] > seq), key=lambda e: e["seq"])
            return [_stored(entry, entry["read_at"]) for entry in newer[:limit]]
        found: list[StoredInboxItem] = []
        start = max(seq + 1, summary["oldest_seq"])
        prefix = item_prefix(self.user_id)
        for key, raw in self.rows.iterate(item_key(self.user_id, start), backwards=True):
            if not key.startswith(prefix) or seq_of(key) >= summary["next_seq"]:
                break
            found.append(self._with_mark(orjson.loads(raw)))
            if len(found) == limit:
                break
        return found

    # -- rows ----------------------------------------------------------------------------

    def _summary(self) -> Summary | None:
        raw = self.rows.get(summary_key(self.user_id))
        if raw is None:
            return None
        value = orjson.loads(raw)
        return Summary(next_seq=value["next_seq"], oldest_seq=value["oldest_seq"])

    def _put_summary(self, summary: Summary) -> None:
        self.rows.put(summary_key(self.user_id), orjson.dumps(summary))

    def _mark(self, notification_id: str) -> Mark | None:
        raw = self.rows.get(notification_key(self.user_id, notification_id))
        return None if raw is None else _mark_from(raw)

    def _held_mark(self, summary: Summary, notification_id: str) -> Mark | None:
        mark = self._mark(notification_id)
        return mark if mark is not None and _holds(summary, mark["seq"]) else None

    def _marks(self, summary: Summary) -> Iterator[tuple[bytes, Mark]]:
        prefix = notification_prefix(self.user_id)
        for key, raw in self.rows.iterate(prefix):
            if not key.startswith(prefix):
                return
            mark = _mark_from(raw)
            if _holds(summary, mark["seq"]):
                yield key, mark

    def _put_item(self, stored: StoredInboxItem) -> None:
        # The item row first: a notification row never names a seq whose item was not written.
        row = {k: v for k, v in stored.items() if k != "read_at"}
        self.rows.put(item_key(self.user_id, stored["seq"]), orjson.dumps(row))
        mark = Mark(seq=stored["seq"], read_at=stored["read_at"])
        self.rows.put(notification_key(self.user_id, stored["notification_id"]), orjson.dumps(mark))

    def _drop(self, seq: int) -> None:
        key = item_key(self.user_id, seq)
        raw = self.rows.get(key)
        if raw is None:
            return  # dropped already, by a run that died before its summary
        notification_id = orjson.loads(raw)["notification_id"]
        mark = self._mark(notification_id)
        if mark is not None and mark["seq"] == seq:
            self.rows.delete(notification_key(self.user_id, notification_id))
        self.rows.delete(key)

    def _newest_first(self, summary: Summary, top: int) -> Iterator[StoredInboxItem]:
        prefix = item_prefix(self.user_id)
        for key, raw in self.rows.iterate(item_key(self.user_id, top)):
            if not key.startswith(prefix) or seq_of(key) < summary["oldest_seq"]:
                return
            yield self._with_mark(orjson.loads(raw))

    def _with_mark(self, row: dict[str, Any]) -> StoredInboxItem:
        mark = self._mark(row["notification_id"])
        read_at = mark["read_at"] if mark is not None and mark["seq"] == row["seq"] else None
        return _stored(row, read_at)

    # -- the value of before rows --------------------------------------------------------

    def _legacy(self) -> dict[str, Any] | None:
        raw = self.rows.get(legacy_key(self.user_id))
        return None if raw is None else dict(orjson.loads(raw))

    def _migrate(self) -> Summary | None:
        """Move the user's whole-inbox value into rows; None when there is none.

        Its items were one value under 1 MB, so each is well under the record limit. The
        value is deleted only after the summary is written: dying in between leaves a value
        no one reads again rather than an inbox that forgot its items.
        """
        legacy = self._legacy()
        if legacy is None:
            return None
        items = legacy["items"]
        for entry in items:
            self._put_item(_stored(entry, entry["read_at"]))
        oldest = min((entry["seq"] for entry in items), default=legacy["next_seq"])
        summary = Summary(next_seq=legacy["next_seq"], oldest_seq=oldest)
        self._put_summary(summary)
        self.rows.delete(legacy_key(self.user_id))
        return summary


def _mark_from(raw: bytes) -> Mark:
    value = orjson.loads(raw)
    return Mark(seq=value["seq"], read_at=value["read_at"])


def _holds(summary: Summary, seq: int) -> bool:
    return summary["oldest_seq"] <= seq < summary["next_seq"]


def _stored(row: dict[str, Any], read_at: str | None) -> StoredInboxItem:
    return {
        "notification_id": row["notification_id"],
        "subject": row["subject"],
        "body": row["body"],
        "category": row["category"],
        "priority": row["priority"],
        "created_at": row["created_at"],
        "delivered_at": row["delivered_at"],
        "read_at": read_at,
        "event_ids": row["event_ids"],
        "seq": row["seq"],
    }


def _public(item: StoredInboxItem | dict[str, Any]) -> InboxItem:
    return {
        "notification_id": item["notification_id"],
        "subject": item["subject"],
        "body": item["body"],
        "category": item["category"],
        "priority": item["priority"],
        "created_at": item["created_at"],
        "delivered_at": item["delivered_at"],
        "read_at": item["read_at"],
        "event_ids": item["event_ids"],
    }
