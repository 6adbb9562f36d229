"""A restart of the local broker: the same address and the same data, as after an operator's
restart of a real one (``clarion bench faults`` restarts its broker under load)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.local import LocalKafka
from tests.helpers.kafka import produce

pytestmark = pytest.mark.integration

TOPIC = "restart.kept"


async def read_all(bootstrap: str, expected: int) -> list[bytes | None]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tp = TopicPartition(TOPIC, 0)
        consumer.assign([tp])
        values: list[bytes | None] = []
        async with asyncio.timeout(30):
            while len(values) < expected:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                values.extend(record.value for record in batch.get(tp, []))
        return values
    finally:
        await consumer.stop()


def test_restart_serves_the_same_port_keeps_topics_and_records_and_outlives_its_loop(
    tmp_path: Path,
) -> None:
    with LocalKafka(data_dir=tmp_path / "kafka", partitions=1) as kafka:
        port = kafka.port
        asyncio.run(ensure_topics(kafka.bootstrap, [TopicSpec(name=TOPIC, partitions=1)]))
        asyncio.run(produce(kafka.bootstrap, TOPIC, [(b"k", b"before")]))
        first = kafka._process
        assert first is not None

        # The loop and its executor threads end here; the new broker must not end with them.
        asyncio.run(kafka.restart())

        assert first.poll() is not None  # the first broker process is gone
        assert kafka.port == port
        asyncio.run(produce(kafka.bootstrap, TOPIC, [(b"k", b"after")]))
        assert asyncio.run(read_all(kafka.bootstrap, 2)) == [b"before", b"after"]
