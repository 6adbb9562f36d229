"""The inbox rules, on rows of a real RocksDB database (as the worker's table store has them)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
from faust.serializers import codecs
from rocksdict import Options, Rdict

from schemas.records import Delivery
from tables.inbox import (
    MAX_BODY_BYTES,
    MAX_EVENT_IDS,
    MAX_ITEM_BYTES,
    MAX_PAGE_SIZE,
    MAX_SUBJECT_BYTES,
    InboxItem,
    InvalidCursorError,
    clip,
    item_from_delivery,
)
from tables.inbox_rows import UserInbox, item_prefix, legacy_key, notification_prefix
from tables.rows import LocalRows, Rows


@pytest.fixture
def rows(tmp_path: Path) -> Iterator[LocalRows]:
    options = Options(raw_mode=True)
    options.create_if_missing(create_if_missing=True)
    db = Rdict(str(tmp_path / "inbox"), options=options)
    try:
        yield LocalRows(db)
    finally:
        db.close()


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


def inbox_of(rows: Rows, *notification_ids: str, max_items: int = 100) -> UserInbox:
    """The inbox of user "u" after these notifications, in this order (the last is newest)."""
    inbox = UserInbox(rows, "u")
    for notification_id in notification_ids:
        inbox.add(item(notification_id), max_items=max_items)
    return inbox


def ids(items: list[InboxItem]) -> list[str]:
    return [entry["notification_id"] for entry in items]


def everything(inbox: UserInbox) -> list[InboxItem]:
    items, cursor = inbox.page(MAX_PAGE_SIZE)
    assert cursor is None
    return items


def read_marks(inbox: UserInbox) -> dict[str, str | None]:
    return {entry["notification_id"]: entry["read_at"] for entry in everything(inbox)}


def test_items_are_newest_first(rows: LocalRows) -> None:
    assert ids(everything(inbox_of(rows, "a", "b", "c"))) == ["c", "b", "a"]


def test_adding_the_same_notification_twice_keeps_the_first_copy(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a", "b")
    inbox.mark_read(["a"], at="2025-01-02T00:00:00Z")
    assert inbox.add(item("a", body="replayed"), max_items=100) is None
    items = everything(inbox)
    assert ids(items) == ["b", "a"]
    assert items[1]["body"] == "body a"
    assert items[1]["read_at"] == "2025-01-02T00:00:00Z"


def test_add_returns_the_stored_item_with_its_seq(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a")
    stored = inbox.add(item("b"), max_items=100)
    assert stored == {**item("b"), "seq": 2}


def test_the_oldest_items_drop_beyond_max_items(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a", "b", "c", "d", max_items=3)
    assert ids(everything(inbox)) == ["d", "c", "b"]
    # Dropped items leave no row behind, and a dropped notification may come back on top.
    assert count_rows(rows, item_prefix("u")) == 3
    assert count_rows(rows, notification_prefix("u")) == 3
    assert inbox.add(item("a"), max_items=3) is not None
    assert ids(everything(inbox)) == ["a", "d", "c"]


def test_a_smaller_inbox_size_drops_the_surplus_on_the_next_add(rows: LocalRows) -> None:
    inbox = inbox_of(rows, *"abcdef", max_items=10)
    inbox.add(item("g"), max_items=2)
    assert ids(everything(inbox)) == ["g", "f"]
    assert count_rows(rows, item_prefix("u")) == 2


def test_mark_read_marks_the_given_items_only(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a", "b", "c")
    assert inbox.mark_read(["a", "c", "unknown", "a"], at="t1") == 2
    assert read_marks(inbox) == {"a": "t1", "b": None, "c": "t1"}
    assert inbox.unread() == 1


def test_mark_read_none_marks_everything_and_keeps_earlier_read_times(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a", "b")
    inbox.mark_read(["a"], at="t1")
    assert inbox.mark_read(None, at="t2") == 1
    assert [entry["read_at"] for entry in everything(inbox)] == ["t2", "t1"]
    assert inbox.unread() == 0


def test_mark_read_without_a_change_changes_nothing(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a")
    inbox.mark_read(None, at="t1")
    assert inbox.mark_read(None, at="t2") == 0
    assert inbox.mark_read(["unknown"], at="t2") == 0
    assert read_marks(inbox) == {"a": "t1"}


def test_an_empty_inbox(rows: LocalRows) -> None:
    inbox = UserInbox(rows, "nobody")
    assert inbox.unread() == 0
    assert inbox.page(10) == ([], None)
    assert inbox.after(0, 10) == []
    assert inbox.mark_read(None, at="t") == 0


def test_users_never_see_each_others_rows(rows: LocalRows) -> None:
    # "u" is a prefix of "u1" as text; the length-prefixed key parts keep them apart.
    inbox_of(rows, "a", "b")
    other = UserInbox(rows, "u1")
    other.add(item("c"), max_items=100)
    other.mark_read(None, at="t")
    assert ids(everything(UserInbox(rows, "u"))) == ["b", "a"]
    assert UserInbox(rows, "u").unread() == 2
    assert ids(everything(other)) == ["c"]


def test_pages_walk_the_inbox_newest_first(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a", "b", "c", "d", "e")
    first, cursor = inbox.page(2)
    assert ids(first) == ["e", "d"]
    assert cursor is not None
    second, cursor = inbox.page(2, cursor)
    assert ids(second) == ["c", "b"]
    assert cursor is not None
    third, cursor = inbox.page(2, cursor)
    assert ids(third) == ["a"]
    assert cursor is None


def test_an_exactly_full_last_page_has_no_next_cursor(rows: LocalRows) -> None:
    items, cursor = inbox_of(rows, "a", "b").page(2)
    assert ids(items) == ["b", "a"]
    assert cursor is None


def test_a_cursor_stays_valid_when_new_items_arrive_on_top(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a", "b", "c", "d")
    _, cursor = inbox.page(2)
    inbox.add(item("new1"), max_items=100)
    inbox.add(item("new2"), max_items=100)
    rest, _ = inbox.page(10, cursor)
    assert ids(rest) == ["b", "a"]


def test_a_cursor_stays_valid_when_old_items_drop_off(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a", "b", "c", "d", max_items=4)
    _, cursor = inbox.page(2)
    inbox.add(item("e"), max_items=4)  # drops "a"
    rest, next_cursor = inbox.page(10, cursor)
    assert ids(rest) == ["b"]
    assert next_cursor is None


def test_pages_are_public_items_without_internal_fields(rows: LocalRows) -> None:
    items, _ = inbox_of(rows, "a").page(1)
    assert items == [item("a")]


def test_page_limits(rows: LocalRows) -> None:
    inbox = inbox_of(rows, *(str(number) for number in range(150)), max_items=200)
    items, _ = inbox.page(1000)
    assert len(items) == MAX_PAGE_SIZE
    with pytest.raises(ValueError, match="limit"):
        inbox.page(0)


@pytest.mark.parametrize("cursor", ["", "not a cursor", "c2VxOg", "c2VxOi0x", "eHg6MTI"])
def test_foreign_cursors_are_refused(rows: LocalRows, cursor: str) -> None:
    with pytest.raises(InvalidCursorError):
        inbox_of(rows, "a").page(1, cursor)


def test_after_gives_newer_items_oldest_first_with_read_marks(rows: LocalRows) -> None:
    inbox = inbox_of(rows, "a", "b", "c", "d", "e", max_items=4)  # "a" (seq 1) dropped
    inbox.mark_read(["c"], at="t")
    assert [(i["seq"], i["notification_id"], i["read_at"]) for i in inbox.after(0, 10)] == [
        (2, "b", None),
        (3, "c", "t"),
        (4, "d", None),
        (5, "e", None),
    ]
    assert [i["seq"] for i in inbox.after(2, 2)] == [3, 4]
    assert inbox.after(5, 10) == []


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


@pytest.mark.parametrize("character", ["x", "é", "\U0001f600", "\x01", '"'])
def test_an_item_stays_bounded_whatever_its_delivery_holds(character: str) -> None:
    # Control characters and quotes grow six- and two-fold in JSON; emoji are four bytes.
    huge = character * (MAX_ITEM_BYTES * 2)
    delivery = {
        "notification_id": "ntf_1",
        "subject": huge,
        "body": huge,
        "category": "social",
        "priority": "low",
        "created_at": "2025-01-01T00:00:00Z",
        "event_ids": [f"{number:0256d}" for number in range(5000)],
    }
    bounded = item_from_delivery(delivery, delivered_at="2025-01-01T00:00:05Z")
    assert len(orjson.dumps({**bounded, "seq": 2**62})) < MAX_ITEM_BYTES
    assert len(orjson.dumps(bounded["body"])) - 2 <= MAX_BODY_BYTES
    assert len(orjson.dumps(bounded["subject"])) - 2 <= MAX_SUBJECT_BYTES
    assert bounded["body"].endswith("\u2026")
    assert bounded["body"][:-1] == huge[: len(bounded["body"]) - 1]
    assert len(bounded["event_ids"]) == MAX_EVENT_IDS


def test_clip_keeps_what_fits_whole() -> None:
    assert clip("héllo", 6) == "héllo"
    assert clip("héllo", 5) == "h\u2026"  # é is two bytes, the ellipsis three


def test_every_row_stays_bounded_however_many_large_items(rows: LocalRows) -> None:
    inbox = UserInbox(rows, "u")
    for number in range(60):
        body = f"{number}" + "x" * MAX_BODY_BYTES
        inbox.add(item(f"n{number}", body=clip(body, MAX_BODY_BYTES)), max_items=20)
    inbox.mark_read(None, at="t")
    sizes = [len(key) + len(value) for key, value in rows.iterate(b"")]
    assert len(sizes) == 2 * 20 + 1  # an item and a notification row each, and the summary
    assert max(sizes) < MAX_ITEM_BYTES


@dataclass
class RecordingRows:
    """Rows that count writes, and die (like a killed worker) after ``fail_after`` of them."""

    rows: Rows
    fail_after: int | None = None
    writes: list[bytes] = field(default_factory=list)

    def get(self, key: bytes) -> bytes | None:
        return self.rows.get(key)

    def iterate(self, start: bytes, *, backwards: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self.rows.iterate(start, backwards=backwards)

    def put(self, key: bytes, value: bytes) -> None:
        self._write(key)
        self.rows.put(key, value)

    def delete(self, key: bytes) -> None:
        self._write(key)
        self.rows.delete(key)

    def _write(self, key: bytes) -> None:
        if self.fail_after is not None and len(self.writes) >= self.fail_after:
            raise ConnectionAbortedError("the worker died here")
        self.writes.append(key)


def test_marking_everything_read_writes_at_most_max_items_rows(rows: LocalRows) -> None:
    inbox_of(rows, *(str(number) for number in range(30)), max_items=10)
    recording = RecordingRows(rows)
    assert UserInbox(recording, "u").mark_read(None, at="t") == 10
    assert len(recording.writes) == 10


def test_an_add_interrupted_anywhere_is_repaired_by_processing_it_again(tmp_path: Path) -> None:
    # The add of "d" writes its two rows, drops "a" (two deletes), then writes the summary.
    for fail_after in range(5):
        options = Options(raw_mode=True)
        options.create_if_missing(create_if_missing=True)
        db = Rdict(str(tmp_path / f"crash-{fail_after}"), options=options)
        try:
            rows = LocalRows(db)
            inbox_of(rows, "a", "b", "c", max_items=3)
            with pytest.raises(ConnectionAbortedError):
                UserInbox(RecordingRows(rows, fail_after), "u").add(item("d"), max_items=3)
            inbox = UserInbox(rows, "u")
            assert inbox.add(item("d"), max_items=3) is not None, fail_after
            assert ids(everything(inbox)) == ["d", "c", "b"], fail_after
            assert inbox.unread() == 3, fail_after
            assert count_rows(rows, b"") == 2 * 3 + 1, fail_after
        finally:
            db.close()


# --- the value of before rows: one JSON value per user --------------------------------------


def legacy_value(*notification_ids: str, read: str | None = None) -> bytes:
    """A whole-inbox value as the table held it: newest first, seqs 1.. in arrival order."""
    stored = [
        {**item(notification_id), "seq": seq, "read_at": read if seq == 1 else None}
        for seq, notification_id in enumerate(notification_ids, start=1)
    ]
    return orjson.dumps({"next_seq": len(stored) + 1, "items": stored[::-1]})


def test_the_legacy_key_is_the_user_id_as_faust_encoded_it() -> None:
    assert legacy_key("ålice") == codecs.dumps("json", "ålice") == '"ålice"'.encode()


def test_a_legacy_value_is_read_as_it_is(rows: LocalRows) -> None:
    rows.put(legacy_key("u"), legacy_value("a", "b", "c", read="t0"))
    inbox = UserInbox(rows, "u")
    first, cursor = inbox.page(2)
    assert ids(first) == ["c", "b"]
    rest, _ = inbox.page(2, cursor)
    assert ids(rest) == ["a"]
    assert rest[0]["read_at"] == "t0"
    assert inbox.unread() == 2
    assert [i["seq"] for i in inbox.after(1, 10)] == [2, 3]


def test_the_first_add_moves_a_legacy_value_into_rows(rows: LocalRows) -> None:
    rows.put(legacy_key("u"), legacy_value("a", "b", "c", read="t0"))
    inbox = UserInbox(rows, "u")
    _, old_cursor = inbox.page(1)
    assert inbox.add(item("b"), max_items=3) is None  # already there
    stored = inbox.add(item("d"), max_items=3)
    assert stored is not None
    assert stored["seq"] == 4
    assert rows.get(legacy_key("u")) is None
    assert ids(everything(inbox)) == ["d", "c", "b"]
    assert inbox.unread() == 3
    # A cursor given out before the move still pages from where it was.
    rest, _ = inbox.page(10, old_cursor)
    assert ids(rest) == ["b"]


def test_the_first_read_mark_moves_a_legacy_value_into_rows(rows: LocalRows) -> None:
    rows.put(legacy_key("u"), legacy_value("a", "b", read="t0"))
    inbox = UserInbox(rows, "u")
    assert inbox.mark_read(None, at="t1") == 1
    assert rows.get(legacy_key("u")) is None
    assert read_marks(inbox) == {"b": "t1", "a": "t0"}


def count_rows(rows: Rows, prefix: bytes) -> int:
    return sum(1 for key, _ in rows.iterate(prefix) if key.startswith(prefix))
