"""Each user's notifications, newest first: rows of the timers table, for the web views.

A row per Delivery created for the user, keyed so that a prefix scan lists them newest first
and a key is a stable pagination cursor. Rows carry a ``due`` time (creation plus the
retention), so the sweep that releases timers also forgets old notifications.
"""

from __future__ import annotations

from typing import Any

from tables.keys import part

NOTIFICATION = b"n"
_NEWEST_FIRST = (1 << 64) - 1


def user_notifications_prefix(user_id: str) -> bytes:
    return NOTIFICATION + part(user_id)


def notification_key(user_id: str, created_ms: int, notification_id: str) -> bytes:
    newest_first = (_NEWEST_FIRST - created_ms).to_bytes(8, "big")
    return user_notifications_prefix(user_id) + newest_first + part(notification_id)


def notification_row(
    delivery: dict[str, Any], *, created_ms: int, retention_ms: int
) -> dict[str, Any]:
    return {
        "due": created_ms + retention_ms,
        "notification_id": delivery["notification_id"],
        "channel": delivery["channel"],
        "subject": delivery.get("subject"),
        "event_ids": delivery["event_ids"],
        "priority": delivery["priority"],
        "category": delivery["category"],
        "created_at": delivery["created_at"],
    }
