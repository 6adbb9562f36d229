"""The transactional outbox against the real broker: one changelog producer, bounded records."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from pipeline.kafka import outbox as outbox_module
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.local import LocalKafka
from pipeline.kafka.outbox import TransactionalOutbox
from schemas.structs import OutRecord
from tests.helpers.kafka import TopicReader

pytestmark = pytest.mark.integration

PARTITIONS = 8


class CountedProducer(AIOKafkaProducer):  # type: ignore[misc]
    """The real producer, counting how many the outbox starts of each kind."""

    started: list[str | None] = []  # noqa: RUF012 - shared by design: the count is the test

    async def start(self) -> None:
        CountedProducer.started.append(self._txn_manager and self._txn_manager.transactional_id)
        await super().start()


@pytest.fixture
async def topics(kafka: LocalKafka) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    names = {"source": f"ob{run}.events", "out": f"ob{run}.out", "log": f"ob{run}.log"}
    await ensure_topics(
        kafka.bootstrap, [TopicSpec(name=n, partitions=PARTITIONS) for n in names.values()]
    )
    return names


def outbox(kafka: LocalKafka, topics: dict[str, str], **options: Any) -> TransactionalOutbox:
    return TransactionalOutbox(
        bootstrap_servers=kafka.bootstrap,
        group_id=f"{topics['source']}-group",
        source_topic=topics["source"],
        transactional_prefix=f"{topics['source']}-tx",
        changelog_topics=frozenset({topics["log"]}),
        **options,
    )


async def test_flushing_every_partition_at_once_starts_one_changelog_producer(
    kafka: LocalKafka, topics: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "AIOKafkaProducer", CountedProducer)
    CountedProducer.started.clear()
    box = outbox(kafka, topics)
    for partition in range(PARTITIONS):
        box.add(
            partition,
            0,
            [
                OutRecord(topics["out"], partition, b"k", b"out"),
                OutRecord(topics["log"], partition, b"k", b"log"),
            ],
        )
    await box.flush_all()
    try:
        plain = [tid for tid in CountedProducer.started if tid is None]
        transactional = sorted(tid for tid in CountedProducer.started if tid is not None)
        assert len(plain) == 1
        assert transactional == sorted(f"{topics['source']}-tx-{p}" for p in range(PARTITIONS))
    finally:
        await box.release(range(PARTITIONS))
    async with TopicReader(kafka.bootstrap, [topics["out"], topics["log"]]) as reader:
        await reader.wait_for(lambda r: len(r) == 2 * PARTITIONS, what="every record written")


async def test_a_record_over_the_limit_is_replaced_and_the_rest_commits(
    kafka: LocalKafka, topics: dict[str, str]
) -> None:
    replaced: list[tuple[int, int, tuple[str, int] | None]] = []

    def on_oversized(
        record: OutRecord, partition: int, source: tuple[str, int] | None
    ) -> list[OutRecord]:
        replaced.append((len(record.value or b""), partition, source))
        return [OutRecord(topics["out"], record.partition, record.key, b"too large")]

    box = outbox(kafka, topics, max_record_bytes=1000, on_oversized=on_oversized)
    box.add(
        3,
        41,
        [
            OutRecord(topics["out"], 3, b"k", b"x" * 2_000_000),
            OutRecord(topics["out"], 3, b"k", b"small"),
        ],
    )
    box.add_unsourced(3, [OutRecord(topics["out"], 3, b"k", b"y" * 1001)])
    try:
        await box.flush(3)
    finally:
        await box.release([3])
    assert replaced == [(2_000_000, 3, (topics["source"], 41)), (1001, 3, None)]
    async with TopicReader(kafka.bootstrap, [topics["out"]]) as reader:
        records = await reader.wait_for(lambda r: len(r) == 3, what="the batch committed")
        assert sorted(r.value for r in records) == [b"small", b"too large", b"too large"]
