"""The in-app channel's live feed: new inbox items handed to this worker's SSE connections.

The Faust agents that store deliveries and apply read marks are wired in
pipeline/wiring/inbox.py.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field

from tables.inbox import StoredInboxItem


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
