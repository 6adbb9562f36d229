from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from schemas.partitioner import partition_for_key
from schemas.records import STATUSES
from tables.status_history import (
    TERMINAL_STATUSES,
    StatusHistories,
    StatusHistory,
    append_status,
    current_status,
    is_terminal,
)
from tables.txstore import NotReadyError, no_index
from tests.helpers.timers import TOPICS, local_table


def change(status: str, at: str, reason: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "notification_id": "ntf_1",
        "event_ids": ["e1"],
        "user_id": "u1",
        "channel": "email",
        "status": status,
        "reason": reason,
        "at": at,
    } | fields


def history_of(*changes: dict[str, Any], max_entries: int = 50) -> StatusHistory:
    history = None
    for one in changes:
        history = append_status(history, one, max_entries=max_entries)
    assert history is not None
    return history


def statuses(history: StatusHistory) -> list[str]:
    return [entry["status"] for entry in history["entries"]]


def test_first_change_starts_the_history() -> None:
    assert history_of(change("queued", "t1")) == {
        "notification_id": "ntf_1",
        "user_id": "u1",
        "channel": "email",
        "event_ids": ["e1"],
        "entries": [{"status": "queued", "reason": None, "at": "t1"}],
    }


def test_changes_are_kept_in_arrival_order() -> None:
    history = history_of(change("queued", "t1"), change("sending", "t2"), change("sent", "t3"))
    assert statuses(history) == ["queued", "sending", "sent"]
    assert current_status(history) == "sent"


def test_a_replayed_change_is_not_recorded_twice() -> None:
    history = history_of(change("queued", "t1"), change("sending", "t2"), change("sent", "t3"))
    assert append_status(history, change("sending", "t2")) is history
    assert append_status(history, change("queued", "t1")) is history


def test_the_same_status_at_another_moment_or_for_another_reason_is_recorded() -> None:
    history = history_of(
        change("retrying", "t1", "HTTP 503"),
        change("retrying", "t2", "HTTP 503"),
        change("retrying", "t2", "timeout"),
    )
    assert [entry["reason"] for entry in history["entries"]] == ["HTTP 503", "HTTP 503", "timeout"]


def test_the_oldest_entries_drop_beyond_max_entries() -> None:
    history = history_of(*(change("retrying", f"t{n}") for n in range(10)), max_entries=3)
    assert [entry["at"] for entry in history["entries"]] == ["t7", "t8", "t9"]


def test_append_never_mutates_its_argument() -> None:
    history = history_of(change("queued", "t1"))
    before = copy.deepcopy(history)
    append_status(history, change("sent", "t2", event_ids=["e1", "e2"]))
    assert history == before


def test_missing_identifying_fields_are_filled_in_by_later_changes() -> None:
    history = history_of(
        change("accepted", "t1", user_id=None, channel=None, event_ids=["e1"]),
        change("queued", "t2", event_ids=["e1", "e2"]),
    )
    assert history["user_id"] == "u1"
    assert history["channel"] == "email"
    assert history["event_ids"] == ["e1", "e2"]


def test_a_change_for_another_notification_is_refused() -> None:
    with pytest.raises(ValueError, match="ntf_2"):
        append_status(
            history_of(change("queued", "t1")), change("sent", "t2", notification_id="ntf_2")
        )


def test_unknown_notification_has_no_status() -> None:
    assert current_status(None) is None


def test_terminal_statuses() -> None:
    assert TERMINAL_STATUSES.issubset(STATUSES)
    for status in ("sent", "failed", "dead_lettered", "expired", "suppressed", "duplicate"):
        assert is_terminal(status)
    for status in ("rejected", "delivered", "read"):
        assert is_terminal(status)
    for status in ("accepted", "deferred", "digested", "queued", "sending", "retrying"):
        assert not is_terminal(status)
    assert not is_terminal(None)


# --- on the transactional table -----------------------------------------------------------------


def test_histories_change_through_staged_changelog_records_and_ignore_replays(
    tmp_path: Path,
) -> None:
    partitions = 4
    partition = partition_for_key(b"ntf_1", partitions)
    table = local_table(
        tmp_path / "status",
        topic=TOPICS.status_state,
        index_of=no_index,
        partitions=range(partition, partition + 1),
    )
    histories = StatusHistories(table=table, partitions=partitions)

    [record] = histories.append(partition, change("queued", "t1"))
    assert (record.topic, record.partition, record.key) == (
        TOPICS.status_state,
        partition,
        b"ntf_1",
    )
    histories.append(partition, change("sent", "t2"))
    assert histories.append(partition, change("sent", "t2")) == []  # a replayed record
    history = histories.get("ntf_1")
    assert history is not None
    assert [e["status"] for e in history["entries"]] == ["queued", "sent"]
    unknown = next(
        f"ntf_{n}" for n in range(2, 100) if partition_for_key(f"ntf_{n}".encode(), 4) == partition
    )
    assert histories.get(unknown) is None
    elsewhere = next(
        f"ntf_{n}" for n in range(2, 100) if partition_for_key(f"ntf_{n}".encode(), 4) != partition
    )
    with pytest.raises(NotReadyError):
        histories.get(elsewhere)  # a partition this worker does not hold
