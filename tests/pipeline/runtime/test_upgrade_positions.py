"""An upgrade from a version whose Faust group read the hot topics: the runtime's new groups
start each partition where that group left it, so nothing routed or delivered is repeated."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.app import topic_specs
from pipeline.kafka.admin import ensure_topics
from pipeline.settings import Settings
from schemas.partitioner import partition_for_key
from tests.agents.conftest import PARTITIONS, Pipeline
from tests.helpers.kafka import produce_json
from tests.helpers.pipeline_io import IN_APP_ONLY, event, preferences

pytestmark = pytest.mark.integration


async def commit_as_earlier_version(pipeline: Pipeline, tp: TopicPartition, offset: int) -> None:
    """What a worker of an earlier version left: the Faust group's offset on ``tp``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.bootstrap,
        group_id=f"{pipeline.prefix}{pipeline.app_id}",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


async def test_routing_resumes_at_the_earlier_groups_offset(pipeline: Pipeline) -> None:
    user = "upgraded"
    partition = partition_for_key(user.encode(), PARTITIONS)
    # The earlier version created the topics.
    settings = Settings(topic_prefix=pipeline.prefix, partitions=PARTITIONS)
    await ensure_topics(pipeline.bootstrap, topic_specs(settings))
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [preferences(user, channels=IN_APP_ONLY)],
    )
    # Ten events the earlier version read; the first six were routed and committed.
    await produce_json(
        pipeline.bootstrap, pipeline.topics.events, [event(f"up-{n}", user) for n in range(10)]
    )
    await commit_as_earlier_version(pipeline, TopicPartition(pipeline.topics.events, partition), 6)
    deliver = pipeline.topics.deliver("in_app")
    async with pipeline.reader(deliver) as reader:
        pipeline.worker().start()
        await produce_json(pipeline.bootstrap, pipeline.topics.events, [event("up-last", user)])
        await reader.wait_for(
            lambda records: any(r.json()["event_ids"] == ["up-last"] for r in records),
            what="the event published after the upgrade",
        )
        await reader.catch_up()
        routed = [r.json()["event_ids"][0] for r in reader.on(deliver)]
    assert routed == [*(f"up-{n}" for n in range(6, 10)), "up-last"]
