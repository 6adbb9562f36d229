"""The local broker itself: it answers, keeps topics apart, and refuses a bad layout."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from pipeline.kafka.admin import TopicLayoutError, TopicSpec, ensure_topics
from pipeline.kafka.local import LocalKafka, LocalKafkaError, require_java

pytestmark = pytest.mark.integration


async def test_broker_answers_metadata_with_one_kraft_node(kafka: LocalKafka) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    assert [broker["host"] for broker in cluster["brokers"]] == ["127.0.0.1"]


async def test_ensure_topics_creates_once_and_refuses_a_different_partition_count(
    kafka: LocalKafka,
) -> None:
    specs = [
        TopicSpec(name="layout.a", partitions=8),
        TopicSpec(name="layout.b", partitions=8, config={"cleanup.policy": "compact"}),
    ]
    assert await ensure_topics(kafka.bootstrap, specs) == ["layout.a", "layout.b"]
    assert await ensure_topics(kafka.bootstrap, specs) == []
    with pytest.raises(TopicLayoutError, match=r"layout\.a has 8 partitions, expected 4"):
        await ensure_topics(kafka.bootstrap, [TopicSpec(name="layout.a", partitions=4)])


def test_missing_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LocalKafkaError, match="Java 17"):
        require_java()
