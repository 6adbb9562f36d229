"""A fresh worker on new topics: every topic under the prefix, created before it consumes."""

from __future__ import annotations

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.helpers.deployment import Pipeline
from tests.helpers.kafka import produce_json
from tests.helpers.pipeline_io import IN_APP_ONLY, all_topics, deliveries, event, preferences
from tests.helpers.web import getter, poll, wait_ready

pytestmark = pytest.mark.integration

USERS = [f"fresh-{n}" for n in range(24)]


async def broker_topics(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = await admin.list_topics()
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(list(names))}
    finally:
        await admin.close()


async def test_table_writes_right_after_ready_are_kept_and_every_topic_is_under_the_prefix(
    pipeline: Pipeline,
) -> None:
    worker = pipeline.worker().start()
    app_id = pipeline.app_id
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, worker)
        # Table writes from the first moment on: the inbox and status tables.
        await produce_json(
            pipeline.bootstrap,
            pipeline.topics.preferences,
            [preferences(user, channels=IN_APP_ONLY) for user in USERS],
        )
        await produce_json(
            pipeline.bootstrap,
            pipeline.topics.events,
            [event(f"first-{user}", user, priority="critical") for user in USERS],
        )
        async with pipeline.reader(*all_topics(pipeline)) as reader:
            await reader.wait_for(
                lambda _: len(deliveries(reader, pipeline)) == len(USERS),
                what="an in-app delivery per user",
            )
        for user in USERS:
            inbox = await poll(
                getter(session, worker, f"/users/{user}/inbox"),
                lambda status, body: status == 200 and body["unread"] == 1,
                what=f"inbox of {user}",
            )
            [item] = inbox["items"]
            history = await poll(
                getter(session, worker, f"/notifications/{item['notification_id']}"),
                lambda status, body: (
                    status == 200 and [e["status"] for e in body["entries"]][-1] == "sent"
                ),
                what=f"status history of {user}'s notification",
            )
            # In-app is stored, not sent through a provider: no "sending" in between.
            assert [e["status"] for e in history["entries"]] == ["queued", "sent"]
    log = worker.log(tail=1_000_000)
    assert "PartitionsMismatch" not in log
    assert "ignored" not in log

    topics = await broker_topics(pipeline.bootstrap)
    mine = {name: n for name, n in topics.items() if app_id in name}
    outside = sorted(name for name in mine if not name.startswith(pipeline.prefix))
    assert not outside, f"topics outside {pipeline.prefix!r}: {outside}"
    # Every table is Clarion's own, on a transactional changelog: Faust keeps none.
    assert not [name for name in mine if name.endswith("-changelog")]
    states = {name: n for name, n in mine.items() if name.startswith(f"{pipeline.prefix}state.")}
    assert set(states) == {
        pipeline.topics.dedupe_state,
        pipeline.topics.preferences_state,
        pipeline.topics.inbox_state,
        pipeline.topics.status_state,
    }
    assert set(states.values()) == {pipeline.workers[0].partitions}


async def test_clarions_own_kafka_settings_are_not_passed_to_the_kafka_clients(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cache = tmp_path_factory.mktemp("kafka-cache")
    worker = pipeline.worker(CLARION_KAFKA_CACHE=str(cache)).start()
    async with aiohttp.ClientSession() as session:
        await wait_ready(session, worker)
    await produce_json(pipeline.bootstrap, pipeline.topics.events, [event("cached", "dora")])
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: any(d["event_ids"] == ["cached"] for d in deliveries(reader, pipeline)),
            what="an event routed by a worker with CLARION_KAFKA_CACHE set",
        )
    assert "unexpected keyword argument" not in worker.log(tail=1_000_000)
