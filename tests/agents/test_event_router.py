"""EventRouter without Kafka: one message in, the exact records to publish out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from agents.ingest import EventRouter
from agents.records_out import OutputWriter
from schemas.partitioner import partition_for_key
from schemas.records import Delivery, StatusChange, UserPreferences
from schemas.structs import OutRecord, SourceMessage
from tables.dedupe import DedupeLedger
from tables.txstore import TransactionalTable
from tests.helpers.timers import TOPICS, dispatcher, local_dedupe_table, local_timer_table

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# Where murmur2 puts ann among 8 partitions: her events are read there, not forwarded.
ANN = partition_for_key(b"ann", 8)


@pytest.fixture
def dedupe_table(tmp_path: Path) -> TransactionalTable:
    return local_dedupe_table(tmp_path / "dedupe")


@pytest.fixture
def preferences() -> dict[str, UserPreferences]:
    return {
        "ann": UserPreferences.from_data(
            {
                "user_id": "ann",
                "addresses": {"email": "ann@example.com", "push_tokens": ["t1", "t2"]},
                "channels": {"sms": False, "webhook": False},
                "categories": {"marketing": {"email": False, "push": False, "in_app": False}},
            }
        )
    }


@pytest.fixture
def router(
    dedupe_table: TransactionalTable, preferences: dict[str, UserPreferences], tmp_path: Path
) -> EventRouter:
    return EventRouter(
        writer=OutputWriter(topics=TOPICS, partitions=8),
        dispatcher=dispatcher(local_timer_table(tmp_path / "timers"), preferences),
        ledger=DedupeLedger(table=dedupe_table, window=3600.0),
        max_event_bytes=4096,
        clock=lambda: NOW,
        repartition_topic=TOPICS.events_repartition,
        partitions=8,
    )


def message(value: Any, *, key: bytes | None = b"ann", offset: int = 0) -> SourceMessage:
    raw = value if isinstance(value, bytes) or value is None else orjson.dumps(value)
    return SourceMessage(topic=TOPICS.events, partition=ANN, offset=offset, key=key, value=raw)


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "user_id": "ann",
        "category": "billing",
        "priority": "high",
        "title": "Invoice",
        "body": "Ready.",
    } | overrides


def decoded(records: list[Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(r.topic, orjson.loads(r.value)) for r in records]


def test_routed_event_gives_accepted_then_a_delivery_and_queued_per_target(
    router: EventRouter,
) -> None:
    out = router.process(message(event()))
    topics = [r.topic for r in out]
    # Each delivery: the Delivery, its queued status, its row in the user's notification list.
    assert topics == [
        "c.status",
        *(["c.deliver.email", "c.status", "c.timers"]),
        *(["c.deliver.push", "c.status", "c.timers"] * 2),
        *(["c.deliver.in_app", "c.status", "c.timers"]),
        TOPICS.dedupe_state,
    ]
    deliveries = [v for t, v in decoded(out) if t.startswith("c.deliver.")]
    assert [d["address"] for d in deliveries] == ["ann@example.com", "t1", "t2", "ann"]
    assert all(d["event_ids"] == ["e1"] and d["subject"] == "Invoice" for d in deliveries)
    assert len({d["notification_id"] for d in deliveries}) == 4
    assert all(set(d) == set(Delivery._options.fields) for d in deliveries)
    statuses = [v for t, v in decoded(out) if t == "c.status"]
    assert all(set(s) == set(StatusChange._options.fields) for s in statuses)
    # Deliveries stay in the partition of the event they came from.
    assert {r.partition for r in out if r.topic.startswith("c.deliver.")} == {ANN}
    assert [v["status"] for t, v in decoded(out) if t == "c.status"] == ["accepted"] + [
        "queued"
    ] * 4


def test_invalid_event_goes_to_the_invalid_topic_with_the_reason_and_is_rejected(
    router: EventRouter,
) -> None:
    out = decoded(router.process(message(b"{oops", offset=7)))
    assert [t for t, _ in out] == ["c.invalid", "c.status"]
    invalid, status = out[0][1], out[1][1]
    assert invalid["raw"] == "{oops"
    assert "not JSON" in invalid["error"]
    assert (invalid["topic"], invalid["partition"], invalid["offset"]) == ("c.events", ANN, 7)
    assert status["status"] == "rejected"
    assert status["notification_id"] == f"invalid:c.events:{ANN}:7"


def test_binary_garbage_is_kept_as_base64(router: EventRouter) -> None:
    ((_, invalid), _) = decoded(router.process(message(b"\xff\x00\xfe")))
    assert invalid["raw_encoding"] == "base64"
    assert invalid["raw"] == "/wD+"


def test_event_keyed_by_someone_else_is_rejected(router: EventRouter) -> None:
    out = decoded(router.process(message(event(), key=b"bob")))
    assert "does not match user_id 'ann'" in out[0][1]["error"]


def test_second_event_with_the_same_id_is_a_duplicate(router: EventRouter) -> None:
    router.process(message(event(), offset=1))
    out = decoded(router.process(message(event(title="again"), offset=2)))
    assert out == [("c.status", out[0][1])]
    assert out[0][1]["status"] == "duplicate"


def test_dedupe_entries_go_to_the_changelog_in_the_events_partition(router: EventRouter) -> None:
    out = router.process(message(event(dedupe_key="k"), offset=4))
    changes = [r for r in out if r.topic == TOPICS.dedupe_state]
    assert [(r.partition, r.key) for r in changes] == [
        (ANN, b"ann\x1fe\x1fe1"),
        (ANN, b"ann\x1fk\x1fk"),
    ]
    assert [orjson.loads(r.value)[1:] for r in changes] == [[ANN, 4], [ANN, 4]]


def test_all_channels_opted_out_is_suppressed_with_the_reasons(router: EventRouter) -> None:
    out = decoded(router.process(message(event(category="marketing"))))
    assert [v["status"] for t, v in out if t == "c.status"] == ["accepted", "suppressed"]
    assert "marketing" in out[1][1]["reason"]


def test_unknown_template_is_rejected_and_not_remembered(
    router: EventRouter, dedupe_table: TransactionalTable
) -> None:
    out = decoded(router.process(message(event(template="nope", title=None, body=None), offset=1)))
    assert "nope" in out[0][1]["error"]
    assert list(dedupe_table.scan(ANN, b"")) == []
    # The producer fixes the event and sends it again under the same id: it goes through.
    fixed = decoded(router.process(message(event(), offset=2)))
    assert fixed[0][1]["status"] == "accepted"


def test_an_event_off_its_users_partition_is_forwarded_unchanged(router: EventRouter) -> None:
    raw = orjson.dumps(event())
    misplaced = SourceMessage(
        topic=TOPICS.events, partition=(ANN + 1) % 8, offset=5, key=b"ann", value=raw
    )
    assert router.process(misplaced) == [OutRecord(TOPICS.events_repartition, ANN, b"ann", raw)]


def test_an_invalid_event_off_its_users_partition_is_rejected_where_it_was_found(
    router: EventRouter,
) -> None:
    misplaced = SourceMessage(
        topic=TOPICS.events, partition=(ANN + 1) % 8, offset=5, key=b"ann", value=b"{"
    )
    invalid, _ = decoded(router.process(misplaced))
    assert invalid[0] == "c.invalid"
    assert (invalid[1]["topic"], invalid[1]["partition"]) == ("c.events", (ANN + 1) % 8)


def test_the_same_offset_on_the_repartition_topic_is_another_event(router: EventRouter) -> None:
    router.process(message(event(), offset=0))
    forwarded = SourceMessage(
        topic=TOPICS.events_repartition,
        partition=ANN,
        offset=0,
        key=b"ann",
        value=orjson.dumps(event()),
    )
    out = decoded(router.process(forwarded))
    assert [(t, v["status"]) for t, v in out] == [("c.status", "duplicate")]


def test_a_replayed_record_of_the_repartition_topic_is_not_a_duplicate(
    router: EventRouter,
) -> None:
    forwarded = SourceMessage(
        topic=TOPICS.events_repartition,
        partition=ANN,
        offset=9,
        key=b"ann",
        value=orjson.dumps(event()),
    )
    router.process(forwarded)
    # The same record again, as after an aborted transaction: routed again, not a duplicate.
    again = decoded(router.process(forwarded))
    assert again[0][1]["status"] == "accepted"


def test_a_key_that_is_not_utf8_is_rejected_with_that_reason(router: EventRouter) -> None:
    _, status = decoded(router.process(message(event(), key=b"\xffann")))
    assert "not valid UTF-8" in status[1]["reason"]
