"""One user's inbox of many large in-app items, through a real broker and worker process.

The inbox table must never hold a value that grows with a user's history: each item is
its own bounded row, so every changelog record stays far below Kafka's 1 MB record limit,
and a worker with no local state rebuilds the same inbox from the changelog alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from pipeline.kafka.admin import TopicSpec, ensure_topics
from schemas.partitioner import partition_for_key
from tests.agents.conftest import PARTITIONS, Pipeline
from tests.helpers.kafka import produce_json
from tests.helpers.pipeline_io import IN_APP_ONLY, event, preferences, wait_for_preferences
from tests.helpers.web import getter, poll

pytestmark = pytest.mark.integration

INBOX_SIZE = 50
LARGE_EVENTS = 200
# Under the 64 KiB event limit with the other fields, and 16 of them exceed 1 MB together.
BODY_BYTES = 60 * 1024
KAFKA_RECORD_LIMIT = 1024 * 1024


def large_event(number: int, user_id: str) -> dict[str, object]:
    body = f"{number:03d}" + "x" * (BODY_BYTES - 3)
    return event(f"large-{number:03d}", user_id, priority="critical", body=body)


async def test_an_inbox_of_large_items_keeps_every_record_small(pipeline: Pipeline) -> None:
    user = "collector"
    size = {"CLARION_INBOX_SIZE": str(INBOX_SIZE)}
    worker = await asyncio.to_thread(pipeline.worker(**size).start)
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [preferences(user, channels=IN_APP_ONLY)],
    )
    await asyncio.to_thread(wait_for_preferences, pipeline, user)
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [large_event(number, user) for number in range(LARGE_EVENTS)],
    )
    # An ordinary event after them must still be stored, on top.
    await produce_json(pipeline.bootstrap, pipeline.topics.events, [event("small", user)])
    expected = [
        "small",
        *(f"large-{number:03d}" for number in reversed(range(LARGE_EVENTS))),
    ][:INBOX_SIZE]

    path = f"/users/{user}/inbox?limit=100"
    async with aiohttp.ClientSession() as session:
        await poll(
            outline(getter(session, worker, path)), complete, what="the small event", deadline_s=180
        )
        _, inbox = await getter(session, worker, path)()
        assert worker.process is not None
        assert worker.process.poll() is None, "the worker died"
        assert [item["event_ids"][0] for item in inbox["items"]] == expected
        assert inbox["unread"] == INBOX_SIZE
        assert inbox["next_cursor"] is None
        newest_large = inbox["items"][1]["body"]
        assert newest_large.startswith(f"{LARGE_EVENTS - 1:03d}")
        assert len(newest_large) == BODY_BYTES

        changelog = pipeline.topics.inbox_state
        async with pipeline.reader(changelog) as reader:
            await reader.wait_for(bool, what="inbox changelog records")
            records = await reader.catch_up()
        largest = max(len(r.key or b"") + len(r.value or b"") for r in records)
        assert largest < KAFKA_RECORD_LIMIT / 4, f"a changelog record of {largest} bytes"

        # The changelog alone holds the inbox: a worker without local state serves it whole.
        await asyncio.to_thread(worker.stop)
        replacement = await asyncio.to_thread(pipeline.worker(**size).start)
        await poll(outline(getter(session, replacement, path)), complete, what="the recovery")
        _, recovered = await getter(session, replacement, path)()
        assert recovered == inbox


async def test_an_inbox_stored_before_rows_is_served_then_moved_into_rows(
    pipeline: Pipeline,
) -> None:
    user = "veteran"
    changelog = pipeline.topics.inbox_state
    # What Faust's inbox table held before rows (copied by an upgrade): the user's whole
    # inbox under Faust's JSON key.
    await ensure_topics(
        pipeline.bootstrap,
        [TopicSpec(name=changelog, partitions=PARTITIONS, config={"cleanup.policy": "compact"})],
    )
    old_items = [
        old_item("ntf_old2", seq=2, read_at=None),
        old_item("ntf_old1", seq=1, read_at="t"),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            changelog,
            orjson.dumps({"next_seq": 3, "items": old_items}),
            key=orjson.dumps(user),
            partition=partition_for_key(user.encode(), PARTITIONS),
        )
    finally:
        await producer.stop()
    worker = await asyncio.to_thread(pipeline.worker().start)
    path = f"/users/{user}/inbox"
    async with aiohttp.ClientSession() as session:
        served = await poll(
            getter(session, worker, path),
            lambda status, body: status == 200 and len(body["items"]) == 2,
            what="the inbox of before rows",
        )
        assert served["items"] == [{k: v for k, v in i.items() if k != "seq"} for i in old_items]
        assert served["unread"] == 1

        await produce_json(
            pipeline.bootstrap,
            pipeline.topics.preferences,
            [preferences(user, channels=IN_APP_ONLY)],
        )
        await asyncio.to_thread(wait_for_preferences, pipeline, user)
        await produce_json(pipeline.bootstrap, pipeline.topics.events, [event("new", user)])
        moved = await poll(
            getter(session, worker, path),
            lambda status, body: status == 200 and len(body["items"]) == 3,
            what="the new item on top of the old ones",
        )
    assert [i["event_ids"] for i in moved["items"]] == [["new"], ["e-ntf_old2"], ["e-ntf_old1"]]
    assert moved["unread"] == 2
    async with pipeline.reader(changelog) as reader:
        await reader.wait_for(
            lambda records: any(r.key == orjson.dumps(user) and r.value is None for r in records),
            what="the tombstone of the old value",
        )


def old_item(notification_id: str, *, seq: int, read_at: str | None) -> dict[str, Any]:
    return {
        "notification_id": notification_id,
        "subject": "Hello",
        "body": f"body of {notification_id}",
        "category": "social",
        "priority": "normal",
        "created_at": "2025-01-01T00:00:00.000Z",
        "delivered_at": "2025-01-01T00:00:01.000Z",
        "read_at": read_at,
        "event_ids": [f"e-{notification_id}"],
        "seq": seq,
    }


Fetch = Callable[[], Awaitable[tuple[int, Any]]]


def outline(fetch: Fetch) -> Fetch:
    """The inbox view with event ids instead of items, for readable timeouts (bodies are big)."""

    async def fetch_outline() -> tuple[int, Any]:
        status, body = await fetch()
        if status != 200:
            return status, body
        return status, {**body, "items": [item["event_ids"] for item in body["items"]]}

    return fetch_outline


def complete(status: int, outlined: dict[str, Any]) -> bool:
    return status == 200 and bool(outlined["items"]) and outlined["items"][0] == ["small"]
