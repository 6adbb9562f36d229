"""Exactly-once output for a consume-transform-produce agent, one transaction per partition.

Faust's own ``exactly_once`` mode keys transactions by the *destination* partition, which
breaks as soon as an agent writes to a topic keyed differently from its source (the status
topic is keyed by notification id). Instead the agent hands every output record to this
outbox together with the source offset it came from; the outbox writes the records and the
consumer offset in one Kafka transaction per source partition. A crash before the commit
aborts the output and the events are processed again; a crash after it loses nothing and
repeats nothing. Transactional ids are per source partition, so a worker that takes over a
partition fences the previous owner's unfinished transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

logger = logging.getLogger(__name__)

_COMMIT_ATTEMPTS = 5


class OutRecord(NamedTuple):
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None


class OutboxCommitError(RuntimeError):
    """The broker refused a transaction several times; the worker must restart."""


@dataclass(slots=True)
class _Pending:
    records: list[OutRecord] = field(default_factory=list)
    next_offset: int | None = None


@dataclass(kw_only=True)
class TransactionalOutbox:
    bootstrap_servers: str
    group_id: str
    source_topic: str
    transactional_prefix: str
    max_pending: int = 2000
    producer_options: Mapping[str, Any] = field(default_factory=dict)
    on_committed: Callable[[int, int], None] | None = None
    _pending: dict[int, _Pending] = field(default_factory=lambda: defaultdict(_Pending))
    _producers: dict[int, AIOKafkaProducer] = field(default_factory=dict)
    _locks: dict[int, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def add(self, partition: int, offset: int, records: Iterable[OutRecord]) -> bool:
        """Queue the output of the event at ``offset``; True when the partition should flush."""
        pending = self._pending[partition]
        pending.records.extend(records)
        pending.next_offset = offset + 1
        return len(pending.records) >= self.max_pending

    def pending_partitions(self) -> list[int]:
        return [p for p, pending in self._pending.items() if pending.next_offset is not None]

    async def flush_all(self) -> None:
        # One producer per partition: their transactions can be in flight at the same time.
        await asyncio.gather(*(self.flush(partition) for partition in self.pending_partitions()))

    async def flush(self, partition: int) -> None:
        async with self._locks[partition]:
            pending = self._pending.pop(partition, None)
            if pending is None or pending.next_offset is None:
                return
            for attempt in range(1, _COMMIT_ATTEMPTS + 1):
                try:
                    await self._commit(partition, pending)
                except ProducerFenced:
                    # Another worker owns the partition now and will process these events again.
                    logger.warning(
                        "partition %d was taken over; dropping its open batch", partition
                    )
                    await self._drop_producer(partition)
                    return
                except KafkaError:
                    logger.exception(
                        "transaction for partition %d failed (attempt %d of %d)",
                        partition,
                        attempt,
                        _COMMIT_ATTEMPTS,
                    )
                    await self._drop_producer(partition)
                    await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
                else:
                    if self.on_committed is not None:
                        self.on_committed(partition, pending.next_offset)
                    return
            raise OutboxCommitError(
                f"could not commit the output of {self.source_topic}[{partition}] "
                f"after {_COMMIT_ATTEMPTS} attempts"
            )

    async def _commit(self, partition: int, pending: _Pending) -> None:
        producer = await self._producer_for(partition)
        by_destination: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
        for record in pending.records:
            by_destination[record.topic, record.partition].append(record)
        assert pending.next_offset is not None
        async with producer.transaction():
            delivered: list[asyncio.Future[Any]] = []
            for (topic, destination), records in by_destination.items():
                batch = producer.create_batch()
                for record in records:
                    if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                        delivered.append(
                            await producer.send_batch(batch, topic, partition=destination)
                        )
                        batch = producer.create_batch()
                        batch.append(key=record.key, value=record.value, timestamp=None)
                delivered.append(await producer.send_batch(batch, topic, partition=destination))
            # aiokafka commits even when a batch failed; raising here aborts the transaction.
            await asyncio.gather(*delivered)
            await producer.send_offsets_to_transaction(
                {TopicPartition(self.source_topic, partition): pending.next_offset},
                self.group_id,
            )

    async def _producer_for(self, partition: int) -> AIOKafkaProducer:
        producer = self._producers.get(partition)
        if producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                transactional_id=f"{self.transactional_prefix}-{partition}",
                enable_idempotence=True,
                acks="all",
                linger_ms=5,
                **self.producer_options,
            )
            # Starting the producer registers its transactional id, which fences the previous
            # owner of this partition and aborts whatever it left open.
            await producer.start()
            self._producers[partition] = producer
        return producer

    async def _drop_producer(self, partition: int) -> None:
        producer = self._producers.pop(partition, None)
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()

    async def claim(self, partitions: Iterable[int]) -> None:
        """Fence earlier owners of newly assigned partitions before their offsets are read.

        Registering the transactional id waits for the previous owner's last transaction to
        be committed or aborted, so the committed offsets read afterwards are final.
        """
        for partition in partitions:
            async with self._locks[partition]:
                await self._producer_for(partition)

    async def release(self, partitions: Iterable[int]) -> None:
        """Commit what is pending for partitions this worker is giving up, then let them go."""
        for partition in partitions:
            await self.flush(partition)
            async with self._locks[partition]:
                await self._drop_producer(partition)

    async def stop(self) -> None:
        with contextlib.suppress(KafkaError, OutboxCommitError):
            await self.flush_all()
        for partition in list(self._producers):
            await self._drop_producer(partition)
