"""Records from producers on another partitioner than murmur2 still meet their user's state.

Preferences and events go through the real broker; the misplaced ones are published with
librdkafka's default partitioner (confluent-kafka, kcat), as most Go, Node and confluent-kafka
producers do.
"""

from __future__ import annotations

import asyncio
import urllib.request
import zlib
from collections import Counter
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import metric_names
from schemas.partitioner import partition_for_key
from tests.agents.conftest import PARTITIONS, Pipeline
from tests.helpers.kafka import TopicReader, produce, produce_json
from tests.helpers.librdkafka import (
    KCAT,
    misplaced,
    produce_with_kcat,
    produce_with_librdkafka,
)
from tests.helpers.pipeline_io import (
    all_topics,
    deliveries,
    event,
    preferences,
    statuses,
    wait_for_no_preferences,
    wait_for_preferences,
)
from tests.helpers.worker import WorkerProcess

pytestmark = pytest.mark.integration

EMAIL_ONLY = {"email": True, "sms": False, "push": False, "in_app": False, "webhook": False}


def _worker(pipeline: Pipeline, **env: str) -> WorkerProcess:
    # Nothing takes the email: after a few failures the circuit opens and deliveries come back
    # on the channel topic after the cool-down (at most 600 s), which would look like a second
    # routing.
    return pipeline.worker(CLARION_BREAKER_COOLDOWN="600", **env).start()


def _repartitioned(port: int, topic: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == metric_names.REPARTITIONED and sample.labels.get("topic") == topic
    )


async def _wait_until_routed(
    reader: TopicReader, pipeline: Pipeline, event_ids: set[str]
) -> Counter[tuple[str, str]]:
    """Wait until every event has a delivery on some channel; (event_id, channel) counts."""

    def routed() -> set[str]:
        return {d["event_ids"][0] for d in deliveries(reader, pipeline)}

    await reader.wait_for(lambda _: event_ids <= routed(), what=f"{len(event_ids)} events routed")
    # Everything committed so far, so a second delivery would be seen too.
    await reader.catch_up()
    return Counter((d["event_ids"][0], d["channel"]) for d in deliveries(reader, pipeline))


def _keys_and_events(users: list[str], prefix: str) -> tuple[list[bytes], list[dict[str, Any]]]:
    events = [event(f"{prefix}-{user}", user) for user in users]
    return [user.encode() for user in users], events


async def test_events_on_librdkafkas_default_partitioner_meet_their_users_preferences(
    pipeline: Pipeline,
) -> None:
    worker = _worker(pipeline)
    users = [f"user-{n}" for n in range(16)]
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [preferences(user, channels=EMAIL_ONLY) for user in users],
    )
    for user in users:
        wait_for_preferences(pipeline, user)
    keys, events = _keys_and_events(users, "ev")
    landed = await produce_with_librdkafka(
        pipeline.bootstrap,
        pipeline.topics.events,
        [(key, orjson.dumps(e)) for key, e in zip(keys, events, strict=True)],
    )
    wrong = misplaced(keys, landed, PARTITIONS)
    assert wrong >= len(users) // 2, "the test needs records off their murmur2 partition"
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        routed = await _wait_until_routed(reader, pipeline, {e["event_id"] for e in events})
        assert routed == Counter({(e["event_id"], "email"): 1 for e in events})
        accepted = [s for s in statuses(reader, pipeline) if s["status"] == "accepted"]
        assert sorted(s["notification_id"] for s in accepted) == sorted(
            e["event_id"] for e in events
        )
    counted = await asyncio.to_thread(_repartitioned, worker.web_port, pipeline.topics.events)
    assert counted >= wrong


async def test_preferences_and_tombstones_on_librdkafkas_default_partitioner_reach_the_user(
    pipeline: Pipeline,
) -> None:
    _worker(pipeline)
    users = [f"pref-{n}" for n in range(12)]
    keys = [user.encode() for user in users]
    landed = await produce_with_librdkafka(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [(user.encode(), orjson.dumps(preferences(user, channels=EMAIL_ONLY))) for user in users],
    )
    moved = [
        user
        for user, where in zip(users, landed, strict=True)
        if partition_for_key(user.encode(), PARTITIONS) != where
    ]
    assert misplaced(keys, landed, PARTITIONS) >= len(users) // 2
    for user in users:
        wait_for_preferences(pipeline, user)
    _, first = _keys_and_events(users, "first")
    await produce_json(pipeline.bootstrap, pipeline.topics.events, first)
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        routed = await _wait_until_routed(reader, pipeline, {e["event_id"] for e in first})
        assert routed == Counter({(e["event_id"], "email"): 1 for e in first})

        # Tombstones, misplaced too, delete the user where their events are routed.
        await produce_with_librdkafka(
            pipeline.bootstrap, pipeline.topics.preferences, [(u.encode(), None) for u in moved]
        )
        for user in moved:
            wait_for_no_preferences(pipeline, user)
        _, after = _keys_and_events(moved, "after")
        await produce_json(pipeline.bootstrap, pipeline.topics.events, after)
        routed = await _wait_until_routed(reader, pipeline, {e["event_id"] for e in after})
        # A user without preferences gets in-app only.
        assert {k: v for k, v in routed.items() if k[0].startswith("after-")} == Counter(
            {(e["event_id"], "in_app"): 1 for e in after}
        )


def _user_misplaced_by_crc32() -> str:
    """A user whose librdkafka partition differs from its murmur2 partition."""
    return next(
        name
        for name in (f"hop-{n}" for n in range(100))
        if zlib.crc32(name.encode()) % PARTITIONS != partition_for_key(name.encode(), PARTITIONS)
    )


async def test_a_repeat_arriving_through_the_repartition_topic_is_a_duplicate(
    pipeline: Pipeline,
) -> None:
    """The first record of events[p] and of the repartition topic's [p] share offset 0."""
    _worker(pipeline)
    user = _user_misplaced_by_crc32()
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [preferences(user, channels=EMAIL_ONLY)],
    )
    wait_for_preferences(pipeline, user)
    repeated = event("once", user)
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await produce_json(pipeline.bootstrap, pipeline.topics.events, [repeated])
        await _wait_until_routed(reader, pipeline, {"once"})
        landed = await produce_with_librdkafka(
            pipeline.bootstrap, pipeline.topics.events, [(user.encode(), orjson.dumps(repeated))]
        )
        assert misplaced([user.encode()], landed, PARTITIONS) == 1
        await reader.wait_for(
            lambda _: any(s["status"] == "duplicate" for s in statuses(reader, pipeline)),
            what="the repeat reported as a duplicate",
        )
        await reader.catch_up()
        assert [d["channel"] for d in deliveries(reader, pipeline)] == ["email"]


@pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install kcat)")
async def test_events_from_kcat_on_its_default_partitioner_meet_their_users_preferences(
    pipeline: Pipeline,
) -> None:
    _worker(pipeline)
    users = [f"kcat-{n}" for n in range(12)]
    await produce(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [(u.encode(), orjson.dumps(preferences(u, channels=EMAIL_ONLY))) for u in users],
    )
    for user in users:
        wait_for_preferences(pipeline, user)
    keys, events = _keys_and_events(users, "kc")
    await asyncio.to_thread(
        produce_with_kcat,
        pipeline.bootstrap,
        pipeline.topics.events,
        [(key, orjson.dumps(e)) for key, e in zip(keys, events, strict=True)],
    )
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        routed = await _wait_until_routed(reader, pipeline, {e["event_id"] for e in events})
        assert routed == Counter({(e["event_id"], "email"): 1 for e in events})


EMAIL_AND_IN_APP = {"email": True, "sms": False, "push": False, "in_app": True, "webhook": False}


async def test_sigkill_during_the_hop_loses_nothing_and_delivers_nothing_twice(
    pipeline: Pipeline,
) -> None:
    worker = _worker(pipeline, CLARION_COMMIT_BATCH="50")
    users = [f"kill-{n}" for n in range(16)]
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [preferences(user, channels=EMAIL_AND_IN_APP) for user in users],
    )
    for user in users:
        wait_for_preferences(pipeline, user)
    first = [event(f"a-{n}", users[n % len(users)]) for n in range(2_000)]
    second = [event(f"b-{n}", users[n % len(users)]) for n in range(500)]

    def messages(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
        return [(e["user_id"].encode(), orjson.dumps(e)) for e in events]

    channels = ("email", "in_app")
    async with pipeline.reader(*(pipeline.topics.deliver(c) for c in channels)) as reader:
        landed = await produce_with_librdkafka(
            pipeline.bootstrap, pipeline.topics.events, messages(first)
        )
        assert misplaced([k for k, _ in messages(first)], landed, PARTITIONS) > len(first) // 2
        # Killed with forwards and their routing in open transactions.
        await reader.wait_for(lambda r: len(r) >= 300, what="some deliveries before the kill")
        worker.kill()
        await reader.catch_up()
        assert len(reader.records) < 2 * len(first), "killed too late to prove anything"
        await produce_with_librdkafka(pipeline.bootstrap, pipeline.topics.events, messages(second))
        worker.start()
        total = len(channels) * (len(first) + len(second))
        await reader.wait_for(lambda r: len(r) >= total, deadline_s=180, what=f"{total} deliveries")
        await reader.catch_up()
        delivered = Counter((r.json()["event_ids"][0], r.json()["channel"]) for r in reader.records)
        expected = {(e["event_id"], c) for e in first + second for c in channels}
        assert set(delivered) == expected, f"missing: {sorted(expected - set(delivered))[:10]}"
        assert max(delivered.values()) == 1, [k for k, v in delivered.items() if v > 1][:10]


async def test_sigkill_while_forwarding_preferences_forwards_each_exactly_once(
    pipeline: Pipeline,
) -> None:
    worker = _worker(pipeline, CLARION_COMMIT_BATCH="50")
    users = [f"pk-{n}" for n in range(50)]
    versions = 100
    # One user's versions all land on one partition (crc32 of the key), so they stay in order.
    updates = [
        preferences(user, addresses={"email": f"{user}+{version}@example.com"})
        for version in range(versions)
        for user in users
    ]
    messages = [(u["user_id"].encode(), orjson.dumps(u)) for u in updates]
    async with pipeline.reader(pipeline.topics.preferences_repartition) as reader:
        landed = await produce_with_librdkafka(
            pipeline.bootstrap, pipeline.topics.preferences, messages
        )
        expected = misplaced([k for k, _ in messages], landed, PARTITIONS)
        assert expected > len(messages) // 2
        # Killed with forwards in open transactions.
        await reader.wait_for(lambda r: len(r) >= 300, what="some forwards before the kill")
        worker.kill()
        await reader.catch_up()
        assert len(reader.records) < expected, "killed too late to prove anything"
        worker.start()
        await reader.wait_for(
            lambda r: len(r) >= expected, deadline_s=120, what=f"{expected} forwards"
        )
        await reader.catch_up()
        forwarded = Counter((r.key, r.value) for r in reader.records)
        assert sum(forwarded.values()) == expected
        assert max(forwarded.values()) == 1
    last = versions - 1
    for user in users:
        wait_for_preferences(
            pipeline,
            user,
            check=lambda body, user=user: (
                body["addresses"]["email"] == f"{user}+{last}@example.com"
            ),
        )
