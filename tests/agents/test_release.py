"""Holding, releasing and digesting through the dispatcher and the sweep, without Kafka.

The timers table runs on a temporary RocksDB; ``commit`` stands in for the outbox applying a
committed transaction, so these tests also cover reads that must see pending writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.dispatch import Arrival, Dispatcher, millis
from agents.release import DIGEST_LINE_CHARS, DIGEST_LISTED, DIGEST_MAX_EVENTS, Sweeper
from schemas.records import NotificationEvent, UserPreferences
from schemas.structs import OutRecord
from tables.timers import TimerTable
from tables.txstore import TransactionalTable
from tables.user_notifications import NOTIFICATION
from tests.helpers.timers import TOPICS, commit, dispatcher, local_timer_table

PARTITION = 2
# 22:30 UTC is 23:30 in Paris: inside the user's 22:00-07:00 quiet hours.
NIGHT = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)
MORNING = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00 in Paris


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def preferences() -> dict[str, UserPreferences]:
    return {"ann": ann()}


def ann(**overrides: Any) -> UserPreferences:
    return UserPreferences.from_data(
        {
            "user_id": "ann",
            "timezone": "Europe/Paris",
            "addresses": {"email": "ann@example.com"},
            "channels": {"sms": False, "push": False, "webhook": False, "in_app": False},
            "quiet_hours": {"start": "22:00", "end": "07:00"},
        }
        | overrides
    )


@pytest.fixture
def table(tmp_path: Path) -> TransactionalTable:
    return local_timer_table(tmp_path / "timers")


@pytest.fixture
def clock() -> Clock:
    return Clock(NIGHT)


@pytest.fixture
def dispatch(table: TransactionalTable, preferences: dict[str, UserPreferences]) -> Dispatcher:
    return dispatcher(table, preferences, digest_window=3600.0)


@pytest.fixture
def sweeper(
    dispatch: Dispatcher,
    table: TransactionalTable,
    preferences: dict[str, UserPreferences],
    clock: Clock,
) -> Sweeper:
    return Sweeper(
        dispatcher=dispatch, timers=TimerTable(table=table), preferences=preferences, clock=clock
    )


def event(event_id: str, **overrides: Any) -> NotificationEvent:
    return NotificationEvent.from_data(
        {
            "event_id": event_id,
            "user_id": "ann",
            "category": "billing",
            "priority": "normal",
            "title": f"title {event_id}",
            "body": f"body {event_id}",
        }
        | overrides
    )


def arrive(
    dispatch: Dispatcher, table: TransactionalTable, ev: NotificationEvent, now: datetime, seq: int
) -> list[OutRecord]:
    records = dispatch.dispatch(
        ev, Arrival(partition=PARTITION, sequence=seq, arrived_ms=millis(now)), now
    )
    table.stage(PARTITION, records)
    return records


def statuses(records: list[OutRecord]) -> list[tuple[str, str]]:
    return [
        (change["notification_id"], change["status"])
        for change in (orjson.loads(r.value) for r in records if r.topic == TOPICS.status)
    ]


def deliveries(records: list[OutRecord]) -> list[dict[str, Any]]:
    return [
        orjson.loads(r.value) for r in records if r.topic.startswith(TOPICS.deliver("email")[:-5])
    ]


def rows(table: TransactionalTable) -> list[bytes]:
    """Rows still waiting (the user's notification list is not waiting for anything)."""
    return [key for key, _ in table.scan(PARTITION, b"") if not key.startswith(NOTIFICATION)]


def test_quiet_hours_hold_then_release_when_they_end(
    dispatch: Dispatcher, table: TransactionalTable, sweeper: Sweeper, clock: Clock
) -> None:
    held = arrive(dispatch, table, event("e1"), NIGHT, 1)
    assert statuses(held) == [("e1", "deferred")]
    assert deliveries(held) == []
    commit(table, PARTITION, held)

    clock.now = MORNING - timedelta(seconds=1)
    assert sweeper.sweep(PARTITION) == []

    clock.now = MORNING
    released = sweeper.sweep(PARTITION)
    [delivery] = deliveries(released)
    assert (delivery["channel"], delivery["event_ids"]) == ("email", ["e1"])
    assert ("e1", "queued") not in statuses(released)
    assert statuses(released) == [(delivery["notification_id"], "queued")]
    commit(table, PARTITION, released)
    assert rows(table) == []
    assert sweeper.sweep(PARTITION) == []


def test_a_row_released_but_not_yet_committed_is_not_released_twice(
    dispatch: Dispatcher, table: TransactionalTable, sweeper: Sweeper, clock: Clock
) -> None:
    commit(table, PARTITION, arrive(dispatch, table, event("e1"), NIGHT, 1))
    clock.now = MORNING
    assert len(deliveries(sweeper.sweep(PARTITION))) == 1
    assert sweeper.sweep(PARTITION) == []


def test_removing_quiet_hours_releases_at_once(
    dispatch: Dispatcher,
    table: TransactionalTable,
    sweeper: Sweeper,
    clock: Clock,
    preferences: dict[str, UserPreferences],
) -> None:
    commit(table, PARTITION, arrive(dispatch, table, event("e1"), NIGHT, 1))
    clock.now = NIGHT + timedelta(minutes=5)
    preferences["ann"] = ann(quiet_hours=None)
    sweeper.touch(PARTITION, "ann")

    [delivery] = deliveries(sweeper.sweep(PARTITION))
    assert delivery["event_ids"] == ["e1"]


def test_channels_are_resolved_again_at_release(
    dispatch: Dispatcher,
    table: TransactionalTable,
    sweeper: Sweeper,
    clock: Clock,
    preferences: dict[str, UserPreferences],
) -> None:
    commit(table, PARTITION, arrive(dispatch, table, event("e1"), NIGHT, 1))
    preferences["ann"] = ann(addresses={"email": "new@example.com"})
    clock.now = MORNING
    [delivery] = deliveries(sweeper.sweep(PARTITION))
    assert delivery["address"] == "new@example.com"


def test_expiry_while_held_reports_expired_and_sends_nothing(
    dispatch: Dispatcher, table: TransactionalTable, sweeper: Sweeper, clock: Clock
) -> None:
    expires = "2026-11-24T01:00:00Z"
    commit(table, PARTITION, arrive(dispatch, table, event("e1", expires_at=expires), NIGHT, 1))
    clock.now = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    out = sweeper.sweep(PARTITION)
    assert deliveries(out) == []
    assert statuses(out) == [("e1", "expired")]
    commit(table, PARTITION, out)
    assert rows(table) == []


def test_send_at_holds_until_then(
    dispatch: Dispatcher, table: TransactionalTable, sweeper: Sweeper, clock: Clock
) -> None:
    noon = datetime(2026, 11, 24, 11, 0, tzinfo=UTC)
    day = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    held = arrive(dispatch, table, event("e1", send_at="2026-11-24T12:00:00+01:00"), day, 1)
    assert statuses(held) == [("e1", "deferred")]
    commit(table, PARTITION, held)
    clock.now = noon - timedelta(milliseconds=1)
    assert sweeper.sweep(PARTITION) == []
    clock.now = noon
    assert len(deliveries(sweeper.sweep(PARTITION))) == 1


def test_low_events_make_one_digest_per_channel_with_every_event_in_order(
    dispatch: Dispatcher, table: TransactionalTable, sweeper: Sweeper, clock: Clock
) -> None:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # 10:00 in Paris: a window boundary
    ids = [f"e{n}" for n in range(12)]
    for seq, event_id in enumerate(ids):
        category = "social" if seq % 3 else "billing"
        now = start + timedelta(minutes=seq)
        records = arrive(
            dispatch, table, event(event_id, priority="low", category=category), now, seq
        )
        assert statuses(records) == [(event_id, "deferred")]
        # Half the batch still pending when the window closes: the digest must include it.
        if seq < 6:
            commit(table, PARTITION, records)

    clock.now = start + timedelta(minutes=59, seconds=59)
    assert sweeper.sweep(PARTITION) == []
    clock.now = start + timedelta(hours=1)
    out = sweeper.sweep(PARTITION)
    [digest] = deliveries(out)
    assert digest["event_ids"] == ids
    assert digest["subject"] == "You have 12 new notifications"
    assert "Billing (4):" in digest["body"]
    assert "Social (8):" in digest["body"]
    assert "title e11" in digest["body"]
    assert sorted(statuses(out)) == sorted(
        [(digest["notification_id"], "queued"), *((i, "digested") for i in ids)]
    )
    commit(table, PARTITION, out)
    assert rows(table) == []


def test_a_digest_of_many_large_events_lists_the_first_ones_and_counts_the_rest(
    dispatch: Dispatcher, table: TransactionalTable, sweeper: Sweeper, clock: Clock
) -> None:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    count = DIGEST_LISTED + 30
    ids = [f"e{n}" for n in range(count)]
    for seq, event_id in enumerate(ids):
        big = event(event_id, priority="low", body="x" * 60_000)
        commit(table, PARTITION, arrive(dispatch, table, big, start, seq))

    clock.now = start + timedelta(hours=1)
    out = sweeper.sweep(PARTITION)
    [digest] = deliveries(out)
    # Every event is in the digest's record, but its text stays small.
    assert digest["event_ids"] == ids
    assert digest["subject"] == f"You have {count} new notifications"
    assert f"Billing ({count}):" in digest["body"]
    assert digest["body"].count("- title ") == DIGEST_LISTED
    assert "... and 30 more." in digest["body"]
    assert len(digest["body"]) < DIGEST_LISTED * (DIGEST_LINE_CHARS + 50) + 500
    assert max(len(r.value or b"") for r in out) < 64 * 1024


def test_a_window_of_more_events_than_one_digest_holds_closes_as_several(
    dispatch: Dispatcher, table: TransactionalTable, sweeper: Sweeper, clock: Clock
) -> None:
    start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    ids = [f"e{n}" for n in range(DIGEST_MAX_EVENTS * 2 + 1)]
    for seq, event_id in enumerate(ids):
        commit(
            table, PARTITION, arrive(dispatch, table, event(event_id, priority="low"), start, seq)
        )

    clock.now = start + timedelta(hours=1)
    out = sweeper.sweep(PARTITION)
    parts = deliveries(out)
    assert [len(d["event_ids"]) for d in parts] == [DIGEST_MAX_EVENTS, DIGEST_MAX_EVENTS, 1]
    assert [i for d in parts for i in d["event_ids"]] == ids
    assert len({d["notification_id"] for d in parts}) == 3
    digested = [n for n, status in statuses(out) if status == "digested"]
    assert sorted(digested) == sorted(ids)


def test_a_digest_closing_in_quiet_hours_waits_for_them_to_end(
    dispatch: Dispatcher, table: TransactionalTable, sweeper: Sweeper, clock: Clock
) -> None:
    commit(table, PARTITION, arrive(dispatch, table, event("e1", priority="low"), NIGHT, 1))
    clock.now = NIGHT + timedelta(hours=1)
    postponed = sweeper.sweep(PARTITION)
    assert deliveries(postponed) == []
    commit(table, PARTITION, postponed)
    clock.now = MORNING
    [digest] = deliveries(sweeper.sweep(PARTITION))
    assert digest["event_ids"] == ["e1"]


def test_over_the_cap_normal_events_overflow_into_the_digest(
    table: TransactionalTable,
    preferences: dict[str, UserPreferences],
    sweeper: Sweeper,
    clock: Clock,
) -> None:
    preferences["ann"] = ann(quiet_hours=None, caps={"email": 2})
    dispatch = sweeper.dispatcher
    day = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
    sent = []
    for seq in range(5):
        records = arrive(dispatch, table, event(f"e{seq}"), day + timedelta(seconds=seq), seq)
        sent.extend(d["event_ids"][0] for d in deliveries(records))
        commit(table, PARTITION, records)
    assert sent == ["e0", "e1"]
    clock.now = day + timedelta(hours=1)
    [digest] = deliveries(sweeper.sweep(PARTITION))
    assert digest["event_ids"] == ["e2", "e3", "e4"]


def test_critical_is_never_held(dispatch: Dispatcher, table: TransactionalTable) -> None:
    records = arrive(dispatch, table, event("e1", priority="critical"), NIGHT, 1)
    assert len(deliveries(records)) == 1
    assert rows(table) == []
