"""The in-app inbox kept per user in a table: pure functions from one value to the next.

An inbox is a plain JSON dict ``{"next_seq": int, "items": [item, ...]}``, newest first.
Every function returns a new value and never mutates its argument: a Faust table only sees
a change when its key is assigned, and the changelog must carry what the table holds. When
nothing changes the argument itself is returned, so a caller can skip the write with
``if new is not old``.

Items are ordered by arrival (delivery), not by ``created_at``: a notification delivered
after retries shows up on top, as the user sees it arrive. Each item carries a ``seq``
number, increasing within the inbox; page cursors name a seq, so they stay valid when new
items arrive on top and when old ones drop off the bottom.

The "feed" functions at the end are the generic part (bounded, newest first, unique by
``notification_id``, paged by seq); tables.status_history builds its per-user index on them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypedDict, TypeVar, cast

DEFAULT_MAX_ITEMS = 200
MAX_PAGE_SIZE = 100
_CURSOR_PREFIX = "seq:"


class InboxItem(TypedDict):
    notification_id: str
    subject: str | None
    body: str
    category: str
    priority: str
    created_at: str
    delivered_at: str
    read_at: str | None
    event_ids: list[str]


class StoredInboxItem(InboxItem):
    seq: int


class Inbox(TypedDict):
    next_seq: int
    items: list[StoredInboxItem]


class InvalidCursorError(ValueError):
    """A page cursor this module did not make (the web layer answers 400)."""


def empty_inbox() -> Inbox:
    return {"next_seq": 1, "items": []}


def item_from_delivery(delivery: Mapping[str, Any], *, delivered_at: str) -> InboxItem:
    """An inbox item from a Delivery's fields (a decoded ``clarion.deliver.in_app`` value)."""
    return {
        "notification_id": delivery["notification_id"],
        "subject": delivery.get("subject"),
        "body": delivery["body"],
        "category": delivery["category"],
        "priority": delivery["priority"],
        "created_at": delivery["created_at"],
        "delivered_at": delivered_at,
        "read_at": None,
        "event_ids": list(delivery["event_ids"]),
    }


def add_item(inbox: Inbox | None, item: InboxItem, *, max_items: int = DEFAULT_MAX_ITEMS) -> Inbox:
    """The inbox with ``item`` on top, unless its notification_id is already there.

    A redelivered or replayed notification keeps its first copy, with its place and read
    state. Beyond ``max_items`` the oldest items are dropped.
    """
    current = inbox or empty_inbox()
    return feed_prepend(current, item, max_entries=max_items)


def mark_read(inbox: Inbox | None, notification_ids: Iterable[str] | None, *, at: str) -> Inbox:
    """The inbox with these items (every item when None) read at ``at``.

    An item already read keeps its first ``read_at``: a client repeating the call, or
    marking everything read, does not rewrite history.
    """
    current = inbox or empty_inbox()
    wanted = None if notification_ids is None else set(notification_ids)
    if not any(_should_mark(item, wanted) for item in current["items"]):
        return current
    items = [
        StoredInboxItem(**{**item, "read_at": at}) if _should_mark(item, wanted) else item
        for item in current["items"]
    ]
    return {"next_seq": current["next_seq"], "items": items}


def unread_count(inbox: Inbox | None) -> int:
    return sum(1 for item in (inbox or empty_inbox())["items"] if item["read_at"] is None)


def page(
    inbox: Inbox | None, limit: int, cursor: str | None = None
) -> tuple[list[InboxItem], str | None]:
    """Up to ``limit`` items older than ``cursor`` (from the top when None), newest first.

    Returns the items without their internal seq, and the cursor of the next page, or None
    when there is none.
    """
    entries, next_cursor = feed_page(inbox or empty_inbox(), limit, cursor)
    return [_public(item) for item in entries], next_cursor


def _should_mark(item: InboxItem, wanted: set[str] | None) -> bool:
    return item["read_at"] is None and (wanted is None or item["notification_id"] in wanted)


def _public(item: StoredInboxItem) -> InboxItem:
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


# --- The generic feed: newest first, unique by notification_id, bounded, paged by seq ---------

_Feed = TypeVar("_Feed", bound=Mapping[str, Any])


def feed_prepend(feed: _Feed, entry: Mapping[str, Any], *, max_entries: int) -> _Feed:
    """``feed`` with ``entry`` on top under the next seq, unless its notification_id is there.

    ``feed`` is a ``{"next_seq": int, "items": [...]}`` dict; the result has the same shape
    and keeps any other key of ``feed``.
    """
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, not {max_entries!r}")
    items: Sequence[Mapping[str, Any]] = feed["items"]
    notification_id = entry["notification_id"]
    if any(existing["notification_id"] == notification_id for existing in items):
        return feed
    seq: int = feed["next_seq"]
    stored = {**entry, "seq": seq}
    # Same shape as the argument, whichever TypedDict the caller gave.
    return cast(_Feed, {**feed, "next_seq": seq + 1, "items": [stored, *items][:max_entries]})


def feed_page(
    feed: Mapping[str, Any], limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Up to ``limit`` entries of ``feed`` older than ``cursor``, and the next page's cursor.

    ``limit`` is capped at ``MAX_PAGE_SIZE`` rather than refused, like most paged APIs.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit!r}")
    limit = min(limit, MAX_PAGE_SIZE)
    items: Sequence[Mapping[str, Any]] = feed["items"]
    below: int = feed["next_seq"] if cursor is None else _decode_cursor(cursor)
    # seq decreases down the list: the page starts at the first entry older than the cursor,
    # wherever new entries on top or dropped ones at the bottom have moved it.
    start = next((i for i, item in enumerate(items) if item["seq"] < below), len(items))
    chunk = list(items[start : start + limit])
    more = start + limit < len(items)
    return chunk, _encode_cursor(chunk[-1]["seq"]) if more and chunk else None


def _encode_cursor(seq: int) -> str:
    # Opaque to clients, so the representation can change; URL-safe so it needs no quoting.
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError) as error:
        raise InvalidCursorError(f"not a page cursor: {cursor!r}") from error
    number = text.removeprefix(_CURSOR_PREFIX)
    if text == number or not number.isdigit():
        raise InvalidCursorError(f"not a page cursor: {cursor!r}")
    return int(number)
