"""``clarion dlq list|replay``: look at dead letters and put them back on their channel."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from pipeline.settings import Settings
from schemas.topics import TopicNames

# Fields a dead letter adds to its Delivery; a replay starts the delivery afresh without them.
_LETTER_FIELDS = ("error", "attempts", "failed_at", "errors")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int
    offset: int
    value: dict[str, Any]

    @property
    def notification_id(self) -> str:
        return str(self.value.get("notification_id"))

    def summary(self) -> str:
        v = self.value
        return (
            f"{self.notification_id}  {v.get('channel')}  user={v.get('user_id')}  "
            f"attempts={v.get('attempts')}  failed_at={v.get('failed_at')}  "
            f"error={v.get('error')!r}"
        )

    def as_delivery(self) -> dict[str, Any]:
        delivery = {k: v for k, v in self.value.items() if k not in _LETTER_FIELDS}
        return delivery | {"attempt": 1, "not_before": None}


async def read_dead_letters(settings: Settings) -> list[DeadLetter]:
    """Every dead letter on the DLQ topic now, oldest first per partition."""
    topic = TopicNames(prefix=settings.topic_prefix).dlq
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        letters: list[DeadLetter] = []
        while remaining := [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for tp, messages in batches.items():
                letters.extend(
                    DeadLetter(tp.partition, m.offset, orjson.loads(m.value))
                    for m in messages
                    if m.value
                )
        return letters
    finally:
        await consumer.stop()


async def replay(settings: Settings, letters: Collection[DeadLetter]) -> list[DeadLetter]:
    """Publish the letters' deliveries to their channel topics; the ones published."""
    topics = TopicNames(prefix=settings.topic_prefix)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = []
        for letter in letters:
            delivery = letter.as_delivery()
            # Same key as the original (user_id) and the default murmur2 partitioner: the
            # delivery lands in the user's partition, like every user-keyed record.
            future = await producer.send(
                topics.deliver(delivery["channel"]),
                orjson.dumps(delivery),
                key=str(delivery["user_id"]).encode(),
            )
            sent.append((letter, future))
        for _, future in sent:
            await future
        return [letter for letter, _ in sent]
    finally:
        await producer.stop()
