"""Producing to and reading from the real test broker, with deadlines instead of sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def json(self) -> Any:
        assert self.value is not None
        return orjson.loads(self.value)


async def produce(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def produce_json(
    bootstrap: str, topic: str, values: Sequence[dict[str, Any]], *, key_field: str = "user_id"
) -> None:
    await produce(bootstrap, topic, [(str(v[key_field]).encode(), orjson.dumps(v)) for v in values])


class TopicReader:
    """Reads committed records of some topics from the beginning, accumulating them."""

    def __init__(self, bootstrap: str, topics: Sequence[str]) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            isolation_level="read_committed",
            metadata_max_age_ms=1000,
        )
        self.records: list[Received] = []

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def wait_for(
        self,
        predicate: Callable[[list[Received]], bool],
        *,
        deadline_s: float = 60.0,
        what: str = "records",
    ) -> list[Received]:
        deadline = time.monotonic() + deadline_s
        while not predicate(self.records):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                summary = [
                    (r.topic, r.value[:200] if r.value else None) for r in self.records[-20:]
                ]
                raise AssertionError(
                    f"timed out after {deadline_s:.0f}s waiting for {what}; last records: {summary}"
                )
            batch = await self._consumer.getmany(timeout_ms=int(min(remaining, 0.5) * 1000))
            for tp, messages in batch.items():
                self.records.extend(
                    Received(tp.topic, tp.partition, m.offset, m.key, m.value) for m in messages
                )
        return self.records

    async def catch_up(self, *, deadline_s: float = 30.0) -> list[Received]:
        """Read everything the broker holds now, on every partition: after this, a record
        that is not in ``records`` was not written (committed) when it was called."""
        consumer = self._consumer
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + deadline_s
        while True:
            behind = [tp for tp in partitions if await consumer.position(tp) < ends[tp]]
            if not behind:
                return self.records
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read to the end of {behind} in {deadline_s}s")
            batch = await consumer.getmany(*behind, timeout_ms=500)
            for tp, messages in batch.items():
                self.records.extend(
                    Received(tp.topic, tp.partition, m.offset, m.key, m.value) for m in messages
                )

    def on(self, topic: str) -> list[Received]:
        return [r for r in self.records if r.topic == topic]
