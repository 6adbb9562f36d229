"""The in-app inbox item, its size bounds and page cursors; and the generic bounded feed.

An inbox is stored as one row per item (see :mod:`tables.inbox_rows`), so an item is one
changelog record: :func:`item_from_delivery` bounds each field, which keeps every item far
below Kafka's 1 MB record limit whatever a template rendered or a digest listed.

Items are ordered by arrival (delivery), not by ``created_at``: a notification delivered
after retries shows up on top, as the user sees it arrive. Each item carries a ``seq``
number, increasing within the inbox; page cursors name a seq, so they stay valid when new
items arrive on top and when old ones drop off the bottom.

The "feed" functions at the end are the generic part of a small list kept as one value
(bounded, newest first, unique by ``notification_id``, paged by seq): tables.status_history
builds its per-user index on them, and tables.inbox_rows reads with them the whole-inbox
values that earlier versions stored.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

import orjson

DEFAULT_MAX_ITEMS = 200
MAX_PAGE_SIZE = 100
_CURSOR_PREFIX = "seq:"

# Bounds of a stored item, in bytes of its JSON encoding (escapes included). The body may be
# as large as an event (CLARION_MAX_EVENT_BYTES, 64 KiB by default); a digest lists every
# event, but an inbox item keeps the first MAX_EVENT_IDS. The sum stays under MAX_ITEM_BYTES.
MAX_BODY_BYTES = 64 * 1024
MAX_SUBJECT_BYTES = 1024
MAX_FIELD_BYTES = 256
MAX_EVENT_IDS = 100
MAX_ITEM_BYTES = 128 * 1024
_ELLIPSIS = "\u2026"


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


class InvalidCursorError(ValueError):
    """A page cursor this module did not make (the web layer answers 400)."""


def item_from_delivery(delivery: Mapping[str, Any], *, delivered_at: str) -> InboxItem:
    """An inbox item from a Delivery's fields (a decoded ``clarion.deliver.in_app`` value).

    Text beyond its bound is cut and ends with an ellipsis; event ids beyond MAX_EVENT_IDS
    are left out (the notification's status history keeps them all).
    """
    subject = delivery.get("subject")
    return {
        "notification_id": clip(delivery["notification_id"], MAX_FIELD_BYTES),
        "subject": None if subject is None else clip(subject, MAX_SUBJECT_BYTES),
        "body": clip(delivery["body"], MAX_BODY_BYTES),
        "category": clip(delivery["category"], MAX_FIELD_BYTES),
        "priority": clip(delivery["priority"], MAX_FIELD_BYTES),
        "created_at": clip(delivery["created_at"], MAX_FIELD_BYTES),
        "delivered_at": delivered_at,
        "read_at": None,
        "event_ids": [clip(e, MAX_FIELD_BYTES) for e in delivery["event_ids"][:MAX_EVENT_IDS]],
    }


def clip(text: str, max_bytes: int) -> str:
    """``text``, or its longest prefix plus an ellipsis, within ``max_bytes`` of JSON."""
    if _json_size(text) <= max_bytes:
        return text
    # JSON escapes make the size of a prefix uneven in its length, but never decreasing.
    budget = max_bytes - _json_size(_ELLIPSIS)
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if _json_size(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low] + _ELLIPSIS


def _json_size(text: str) -> int:
    return len(orjson.dumps(text)) - 2  # without the quotes


def encode_cursor(seq: int) -> str:
    # Opaque to clients, so the representation can change; URL-safe so it needs no quoting.
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError) as error:
        raise InvalidCursorError(f"not a page cursor: {cursor!r}") from error
    number = text.removeprefix(_CURSOR_PREFIX)
    if text == number or not number.isdigit():
        raise InvalidCursorError(f"not a page cursor: {cursor!r}")
    return int(number)


def checked_limit(limit: int) -> int:
    """``limit`` capped at ``MAX_PAGE_SIZE`` rather than refused, like most paged APIs."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit!r}")
    return min(limit, MAX_PAGE_SIZE)


# --- A stored feed (the inbox before rows: {"next_seq", "items"}), paged by seq ---------------


def feed_page(
    feed: Mapping[str, Any], limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """Up to ``limit`` entries of ``feed`` older than ``cursor``, and the next page's cursor."""
    limit = checked_limit(limit)
    items: Sequence[Mapping[str, Any]] = feed["items"]
    below: int = feed["next_seq"] if cursor is None else decode_cursor(cursor)
    # seq decreases down the list: the page starts at the first entry older than the cursor,
    # wherever new entries on top or dropped ones at the bottom have moved it.
    start = next((i for i, item in enumerate(items) if item["seq"] < below), len(items))
    chunk = list(items[start : start + limit])
    more = start + limit < len(items)
    return chunk, encode_cursor(chunk[-1]["seq"]) if more and chunk else None
