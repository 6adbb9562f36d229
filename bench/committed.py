"""What the measured worker committed, as readers of its topics see it (the pipeline bench).

* :class:`CommittedEmails`: the Deliveries a ``read_committed`` consumer finds on the email
  topic, i.e. what the SMTP sink must receive, once each;
* :func:`first_record_at`: when the worker wrote its first record on a topic, the start of
  a run measured from the first event in;
* :func:`high_watermarks` and :func:`read_to`: whether a consumer has read all there is.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.harness import PARTITIONS

# A failure bound for reading the first records, never waited out on success.
READ_WITHIN_S = 60.0


@dataclass
class CommittedEmails:
    """The Deliveries committed on the email topic: what the sink must receive, once each."""

    ids: set[str] = field(default_factory=set)
    records: int = 0

    async def watch(self, consumer: AIOKafkaConsumer) -> None:
        """Until cancelled."""
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for records in batches.values():
                for record in records:
                    self.ids.add(orjson.loads(record.value or b"{}")["notification_id"])
                self.records += len(records)


async def first_record_at(bootstrap: str, topic: str) -> float:
    """The earliest timestamp (set by the writer) of the first record of any partition,
    on this process's ``perf_counter`` clock."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        firsts: dict[TopicPartition, int] = {}
        ends = await consumer.end_offsets(partitions)
        wanted = {tp for tp in partitions if ends[tp] > 0}
        async with asyncio.timeout(READ_WITHIN_S):
            while wanted - firsts.keys():
                for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                    firsts.setdefault(tp, records[0].timestamp)
                    consumer.pause(tp)  # one record is all it takes
    finally:
        await consumer.stop()
    wall_minus_perf = time.time() - time.perf_counter()
    return min(firsts.values()) / 1000 - wall_minus_perf


async def high_watermarks(
    bootstrap: str, partitions: list[TopicPartition]
) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_uncommitted")
    await consumer.start()
    try:
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
    return ends


async def read_to(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether the consumer has read every partition up to ``ends``."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True
