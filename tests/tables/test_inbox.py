from __future__ import annotations

import copy
import json

import pytest

from schemas.records import Delivery
from tables.inbox import (
    MAX_PAGE_SIZE,
    Inbox,
    InboxItem,
    InvalidCursorError,
    add_item,
    item_from_delivery,
    mark_read,
    page,
    unread_count,
)


def item(notification_id: str, **fields: object) -> InboxItem:
    value: InboxItem = {
        "notification_id": notification_id,
        "subject": f"subject {notification_id}",
        "body": f"body {notification_id}",
        "category": "social",
        "priority": "normal",
        "created_at": "2025-01-01T00:00:00.000Z",
        "delivered_at": "2025-01-01T00:00:01.000Z",
        "read_at": None,
        "event_ids": [f"e-{notification_id}"],
    }
    value.update(fields)  # type: ignore[typeddict-item]
    return value


def inbox_of(*notification_ids: str, max_items: int = 100) -> Inbox:
    """An inbox that received these notifications in this order (the last is newest)."""
    inbox = None
    for notification_id in notification_ids:
        inbox = add_item(inbox, item(notification_id), max_items=max_items)
    assert inbox is not None
    return inbox


def ids(items: list[InboxItem] | Inbox) -> list[str]:
    entries = items["items"] if isinstance(items, dict) else items
    return [entry["notification_id"] for entry in entries]


def test_items_are_newest_first() -> None:
    assert ids(inbox_of("a", "b", "c")) == ["c", "b", "a"]


def test_adding_the_same_notification_twice_keeps_the_first_copy() -> None:
    inbox = inbox_of("a", "b")
    inbox = mark_read(inbox, ["a"], at="2025-01-02T00:00:00Z")
    again = add_item(inbox, item("a", body="replayed"), max_items=100)
    assert again is inbox
    assert ids(again) == ["b", "a"]
    assert again["items"][1]["body"] == "body a"
    assert again["items"][1]["read_at"] == "2025-01-02T00:00:00Z"


def test_the_oldest_items_drop_beyond_max_items() -> None:
    assert ids(inbox_of("a", "b", "c", "d", max_items=3)) == ["d", "c", "b"]


def test_functions_never_mutate_their_argument() -> None:
    inbox = inbox_of("a", "b")
    before = copy.deepcopy(inbox)
    add_item(inbox, item("c"), max_items=100)
    mark_read(inbox, None, at="t")
    page(inbox, 1)
    assert inbox == before


def test_mark_read_marks_the_given_items_only() -> None:
    inbox = mark_read(inbox_of("a", "b", "c"), ["a", "c", "unknown"], at="t1")
    assert {entry["notification_id"]: entry["read_at"] for entry in inbox["items"]} == {
        "a": "t1",
        "b": None,
        "c": "t1",
    }
    assert unread_count(inbox) == 1


def test_mark_read_none_marks_everything_and_keeps_earlier_read_times() -> None:
    inbox = mark_read(inbox_of("a", "b"), ["a"], at="t1")
    inbox = mark_read(inbox, None, at="t2")
    assert [entry["read_at"] for entry in inbox["items"]] == ["t2", "t1"]
    assert unread_count(inbox) == 0


def test_mark_read_without_a_change_returns_the_same_value() -> None:
    inbox = mark_read(inbox_of("a"), None, at="t1")
    assert mark_read(inbox, None, at="t2") is inbox
    assert mark_read(inbox, ["unknown"], at="t2") is inbox


def test_an_empty_inbox() -> None:
    assert unread_count(None) == 0
    assert page(None, 10) == ([], None)
    assert mark_read(None, None, at="t")["items"] == []


def test_pages_walk_the_inbox_newest_first() -> None:
    inbox = inbox_of("a", "b", "c", "d", "e")
    first, cursor = page(inbox, 2)
    assert ids(first) == ["e", "d"]
    assert cursor is not None
    second, cursor = page(inbox, 2, cursor)
    assert ids(second) == ["c", "b"]
    assert cursor is not None
    third, cursor = page(inbox, 2, cursor)
    assert ids(third) == ["a"]
    assert cursor is None


def test_an_exactly_full_last_page_has_no_next_cursor() -> None:
    items, cursor = page(inbox_of("a", "b"), 2)
    assert ids(items) == ["b", "a"]
    assert cursor is None


def test_a_cursor_stays_valid_when_new_items_arrive_on_top() -> None:
    inbox = inbox_of("a", "b", "c", "d")
    _, cursor = page(inbox, 2)
    inbox = add_item(inbox, item("new1"), max_items=100)
    inbox = add_item(inbox, item("new2"), max_items=100)
    rest, _ = page(inbox, 10, cursor)
    assert ids(rest) == ["b", "a"]


def test_a_cursor_stays_valid_when_old_items_drop_off() -> None:
    inbox = inbox_of("a", "b", "c", "d", max_items=4)
    _, cursor = page(inbox, 2)
    inbox = add_item(inbox, item("e"), max_items=4)  # drops "a"
    rest, next_cursor = page(inbox, 10, cursor)
    assert ids(rest) == ["b"]
    assert next_cursor is None


def test_pages_are_public_items_without_internal_fields() -> None:
    items, _ = page(inbox_of("a"), 1)
    assert items == [item("a")]


def test_page_limits() -> None:
    inbox = inbox_of(*(str(number) for number in range(150)))
    items, _ = page(inbox, 1000)
    assert len(items) == MAX_PAGE_SIZE
    with pytest.raises(ValueError, match="limit"):
        page(inbox, 0)


@pytest.mark.parametrize("cursor", ["", "not a cursor", "c2VxOg", "c2VxOi0x", "eHg6MTI"])
def test_foreign_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        page(inbox_of("a"), 1, cursor)


def test_item_from_delivery() -> None:
    delivery = Delivery(
        notification_id="ntf_1",
        user_id="u",
        channel="in_app",
        address="u",
        subject="Hi",
        body="Hello",
        event_ids=["e1", "e2"],
        priority="high",
        category="billing",
        created_at="2025-01-01T00:00:00Z",
    )
    assert item_from_delivery(delivery.asdict(), delivered_at="2025-01-01T00:00:05Z") == {
        "notification_id": "ntf_1",
        "subject": "Hi",
        "body": "Hello",
        "category": "billing",
        "priority": "high",
        "created_at": "2025-01-01T00:00:00Z",
        "delivered_at": "2025-01-01T00:00:05Z",
        "read_at": None,
        "event_ids": ["e1", "e2"],
    }


def test_an_inbox_survives_a_json_round_trip() -> None:
    inbox = mark_read(inbox_of("a", "b"), ["a"], at="t")
    restored = json.loads(json.dumps(inbox))
    assert restored == inbox
    assert ids(add_item(restored, item("c"), max_items=100)) == ["c", "b", "a"]
