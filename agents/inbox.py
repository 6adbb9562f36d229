"""The in-app channel: deliveries into each user's inbox, read marks, and the live feed.

* ``clarion.deliver.in_app`` → the user's inbox rows (tables.inbox_rows: newest first,
  bounded, idempotent on the notification id) and status ``sent``
  (:meth:`InboxWriter.deliver`);
* ``clarion.inbox.commands`` (user-keyed): ``{"user_id", "command": "mark_read",
  "notification_ids": [...] | null, "at"}`` published by the web API, so that read marks
  change the table through Kafka like every other write (:meth:`InboxWriter.command`);
* :class:`InboxFeed` hands new items to this worker's live (SSE) connections.

Both return the changelog records of their writes with their output, for the partition's
checkpoint (pipeline/runtime/store.py).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson

from agents.records_out import OutputWriter, utc_iso
from agents.telemetry import SENT, Telemetry
from schemas.clock import Clock
from schemas.structs import OutRecord, SourceMessage
from tables.inbox import StoredInboxItem, item_from_delivery
from tables.inbox_rows import UserInbox
from tables.rows import StagedRows
from tables.txstore import TransactionalTable

MARK_READ = "mark_read"


@dataclass(eq=False)  # identity: each connection is its own subscription
class Subscription:
    user_id: str
    queue: asyncio.Queue[StoredInboxItem]
    # Set when the client fell too far behind: its stream ends and it reconnects with
    # Last-Event-ID, catching up from the table instead of from memory.
    overflowed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class InboxFeed:
    """Fan-out of new inbox items to live connections, with a bounded buffer per connection."""

    buffer_size: int = 100
    _subscribers: dict[str, set[Subscription]] = field(default_factory=lambda: defaultdict(set))

    def subscribe(self, user_id: str) -> Subscription:
        subscription = Subscription(user_id, asyncio.Queue(maxsize=self.buffer_size))
        self._subscribers[user_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.user_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.user_id]

    def publish(self, user_id: str, item: StoredInboxItem) -> None:
        for subscription in self._subscribers.get(user_id, ()):
            try:
                subscription.queue.put_nowait(item)
            except asyncio.QueueFull:
                subscription.overflowed.set()

    def close_all(self) -> None:
        """Partitions moved: every client reconnects and finds the new owner."""
        for subscribers in self._subscribers.values():
            for subscription in subscribers:
                subscription.overflowed.set()


def mark_read_command(user_id: str, notification_ids: list[str] | None, at: str) -> bytes:
    return orjson.dumps(
        {"user_id": user_id, "command": MARK_READ, "notification_ids": notification_ids, "at": at}
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class InboxWriter:
    table: TransactionalTable
    feed: InboxFeed
    writer: OutputWriter
    telemetry: Telemetry
    clock: Clock
    max_items: int

    def deliver(self, message: SourceMessage) -> list[OutRecord]:
        delivery: dict[str, Any] = orjson.loads(message.value or b"")
        now = self.clock()
        at = utc_iso(now)
        user_id = delivery["user_id"]
        rows = StagedRows(self.table, message.partition)
        item = item_from_delivery(delivery, delivered_at=at)
        stored = UserInbox(rows, user_id).add(item, max_items=self.max_items)
        written = rows.records()
        if stored is not None:
            self.feed.publish(user_id, stored)
        status = self.writer.status(
            notification_id=delivery["notification_id"],
            status="sent",
            at=at,
            event_ids=list(delivery["event_ids"]),
            user_id=user_id,
            channel="in_app",
            reason="stored in the in-app inbox",
        )
        self.telemetry.delivery("in_app", "inbox", SENT)
        self.telemetry.sent("in_app", delivery.get("priority"), delivery.get("created_at"), now)
        return [*written, status]

    def command(self, message: SourceMessage) -> list[OutRecord]:
        command: dict[str, Any] = orjson.loads(message.value or b"")
        if command.get("command") != MARK_READ:
            raise ValueError(f"unknown inbox command {command.get('command')!r}")
        rows = StagedRows(self.table, message.partition)
        UserInbox(rows, command["user_id"]).mark_read(
            command.get("notification_ids"), at=command["at"]
        )
        return rows.records()
