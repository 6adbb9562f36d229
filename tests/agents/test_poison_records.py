"""No single record stops a partition: oversized input and output through the real broker.

Before these fixes the copy of a large value on the invalid topic (escaped or base64) grew past
the broker's 1 MB record limit, the transaction failed on every retry and the worker crashed,
again after every restart, on the same record.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import Counter

import orjson
import pytest

from agents.records_out import INVALID_RAW_KEPT_BYTES
from tests.agents.conftest import Pipeline
from tests.helpers.kafka import Received, produce, produce_json
from tests.helpers.pipeline_io import (
    all_topics,
    deliveries,
    event,
    preferences,
    wait_for_preferences,
)

pytestmark = pytest.mark.integration

# Under the broker's limit as a record, over it once escaped (six bytes each) or base64'd.
CONTROL_BYTES = b"\x01" * 200_000
RANDOM_BYTES = os.urandom(800_000)
BROKER_RECORD_LIMIT = 1_048_576


def original(record: Received) -> bytes:
    value = record.json()
    raw: str = value["raw"]
    return base64.b64decode(raw) if value["raw_encoding"] == "base64" else raw.encode()


def assert_bounded_copy_of(record: Received, raw: bytes) -> None:
    value = record.json()
    assert len(record.value or b"") < BROKER_RECORD_LIMIT
    assert value["raw_bytes"] == len(raw)
    assert value["raw_sha256"] == hashlib.sha256(raw).hexdigest()
    assert value["raw_truncated"] is True
    assert original(record) == raw[: len(original(record))]
    assert 0 < len(original(record)) <= INVALID_RAW_KEPT_BYTES
    assert f"the value was {len(raw)} bytes" in value["error"]


async def test_oversized_events_land_bounded_on_invalid_and_routing_goes_on(
    pipeline: Pipeline,
) -> None:
    worker = pipeline.worker().start()
    await produce_json(pipeline.bootstrap, pipeline.topics.preferences, [preferences("ann")])
    wait_for_preferences(pipeline, "ann")
    # All on ann's partition, so a stuck partition would hold back the good event behind them.
    await produce(
        pipeline.bootstrap,
        pipeline.topics.events,
        [(b"ann", CONTROL_BYTES), (b"ann", RANDOM_BYTES), (b"ann", b"{" * 900_000)],
    )
    await produce_json(
        pipeline.bootstrap, pipeline.topics.events, [event("after", "ann", channels=["email"])]
    )
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: any(d["event_ids"] == ["after"] for d in deliveries(reader, pipeline)),
            what="the good event behind the oversized ones delivered",
        )
        await reader.catch_up()
        invalid = reader.on(pipeline.topics.invalid)
        assert [r.json()["raw_bytes"] for r in invalid] == [200_000, 800_000, 900_000]
        control, random_bytes, braces = invalid
        assert_bounded_copy_of(control, CONTROL_BYTES)
        assert control.json()["raw_encoding"] == "utf-8"
        assert_bounded_copy_of(random_bytes, RANDOM_BYTES)
        assert random_bytes.json()["raw_encoding"] == "base64"
        assert_bounded_copy_of(braces, b"{" * 900_000)
        assert [d["event_ids"] for d in deliveries(reader, pipeline)] == [["after"]]
    assert worker.process is not None
    assert worker.process.poll() is None, worker.log()


async def test_oversized_preferences_land_on_invalid_and_later_ones_apply(
    pipeline: Pipeline,
) -> None:
    worker = pipeline.worker().start()
    await produce(pipeline.bootstrap, pipeline.topics.preferences, [(b"bob", RANDOM_BYTES)])
    await produce_json(pipeline.bootstrap, pipeline.topics.preferences, [preferences("bob")])
    wait_for_preferences(pipeline, "bob")
    async with pipeline.reader(pipeline.topics.invalid) as reader:
        [invalid] = await reader.wait_for(bool, what="the oversized preferences on invalid")
        assert invalid.key == b"bob"
        assert invalid.json()["topic"] == pipeline.topics.preferences
        assert_bounded_copy_of(invalid, RANDOM_BYTES)
        await reader.catch_up()
        assert len(reader.records) == 1
    assert worker.process is not None
    assert worker.process.poll() is None, worker.log()


async def test_an_event_whose_output_is_over_the_record_limit_is_rejected_with_the_reason(
    pipeline: Pipeline,
) -> None:
    # The name is in the subject, the text and (escaped: four bytes each) the HTML body, so the
    # email's record outgrows a 64 KiB limit while the event stays under its own.
    pipeline.worker(CLARION_MAX_RECORD_BYTES="65536").start()
    await produce_json(pipeline.bootstrap, pipeline.topics.preferences, [preferences("cy")])
    wait_for_preferences(pipeline, "cy")
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [
            event(
                "huge",
                "cy",
                channels=["email"],
                template="welcome",
                data={"name": "<" * 20_000},
                title=None,
                body=None,
            ),
            event("small", "cy", channels=["email"]),
        ],
    )
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: any(d["event_ids"] == ["small"] for d in deliveries(reader, pipeline)),
            what="the event after the oversized one delivered",
        )
        await reader.catch_up()
        [invalid] = reader.on(pipeline.topics.invalid)
        reason = invalid.json()["error"]
        assert f"{pipeline.topics.deliver('email')} would be" in reason
        assert "over the 65536-byte record limit" in reason
        # Statuses are keyed by notification id: no order across the two.
        outcomes = Counter(
            (s["notification_id"], s["status"])
            for s in (r.json() for r in reader.on(pipeline.topics.status))
            if s["status"] in {"rejected", "accepted"}
        )
        assert outcomes == {("huge", "rejected"): 1, ("small", "accepted"): 1}
        assert [d["event_ids"] for d in deliveries(reader, pipeline)] == [["small"]]


def with_deep_data(value: dict[str, object], levels: int) -> bytes:
    """The event with ``data`` nested ``levels`` deep: valid JSON orjson cannot write."""
    encoded = orjson.dumps({**value, "data": None})
    return encoded.replace(b'"data":null', b'"data":' + b'{"d":' * levels + b"{}" + b"}" * levels)


async def test_a_worker_fed_every_poison_record_at_once_keeps_routing_good_events(
    pipeline: Pipeline,
) -> None:
    worker = pipeline.worker().start()
    users = [f"good-{n}" for n in range(8)]
    await produce_json(
        pipeline.bootstrap, pipeline.topics.preferences, [preferences(u) for u in users]
    )
    for user in users:
        wait_for_preferences(pipeline, user)
    bad_events: list[tuple[bytes, bytes]] = [
        (b"ann", CONTROL_BYTES),
        (b"ann", RANDOM_BYTES),
        (b"ann", with_deep_data(event("deep", "ann"), 300)),
        (b"ann", orjson.dumps(event("tpl", "ann", template="t" * 300, title=None, body=None))),
        (b"ann", orjson.dumps(event("far", "ann", send_at="9999-12-31T00:00:00Z"))),
        (b"\xff\xfe", orjson.dumps(event("key", "ann"))),
    ]
    bad_preferences: list[tuple[bytes, bytes]] = [
        (b"ann", RANDOM_BYTES),
        (b"\xff\xfe", orjson.dumps(preferences("ann"))),
    ]
    await produce(pipeline.bootstrap, pipeline.topics.events, bad_events)
    await produce(pipeline.bootstrap, pipeline.topics.preferences, bad_preferences)
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [event(f"after-{u}", u, channels=["email"]) for u in users],
    )
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: len(deliveries(reader, pipeline)) == len(users),
            deadline_s=30,
            what="every good event delivered within seconds of the poison records",
        )
        await reader.wait_for(
            lambda _: (
                len(reader.on(pipeline.topics.invalid)) == len(bad_events) + len(bad_preferences)
            ),
            what="a record on the invalid topic for every bad one",
        )
        await reader.catch_up()
        invalid = reader.on(pipeline.topics.invalid)
        assert all(len(r.value or b"") < BROKER_RECORD_LIMIT for r in invalid)
        assert all(r.json()["error"] for r in invalid)
        assert sorted(d["event_ids"][0] for d in deliveries(reader, pipeline)) == sorted(
            f"after-{u}" for u in users
        )
    assert worker.process is not None
    assert worker.process.poll() is None, worker.log()
