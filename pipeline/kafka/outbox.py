"""Exactly-once output for a consume-transform-produce agent, one transaction per partition.

Faust's own ``exactly_once`` mode keys transactions by the *destination* partition, which
breaks as soon as an agent writes to a topic keyed differently from its source (the status
topic is keyed by notification id). Instead the agent hands every output record to this
outbox together with the source offset it came from; the outbox writes the records and the
consumer offset in one Kafka transaction per source partition. A crash before the commit
aborts the output and the events are processed again; a crash after it loses nothing and
repeats nothing. Transactional ids are per source partition, so a worker that takes over a
partition fences the previous owner's unfinished transaction.

A partition's transaction may carry the offsets of several source topics: the events topic
and its repartition topic (see :mod:`agents.ingest`). Faust assigns partition *p* of every
topic with the same partition count to the same worker, so one transactional id per *p*
fences both, and a forward to the repartition topic commits with the offset it came from.

Table changelogs are the exception: Faust's recovery waits for the offset of a changelog's
last record, and a transactional changelog ends in a commit marker that is never delivered,
so recovery would wait forever. Records for ``changelog_topics`` are therefore written
before the transaction, without one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from schemas.structs import DEFAULT_MAX_RECORD_BYTES, OutRecord, record_size

logger = logging.getLogger(__name__)

_COMMIT_ATTEMPTS = 5


class OutboxCommitError(RuntimeError):
    """The broker refused a transaction several times; the worker must restart."""


# Told a record over ``max_record_bytes`` with the partition and the (topic, offset) of the record
# it came from (None for output no consumed record caused); returns what to write instead,
# which must itself be small.
OversizedHandler = Callable[[OutRecord, int, tuple[str, int] | None], list[OutRecord]]


@dataclass(slots=True)
class _Pending:
    records: list[OutRecord] = field(default_factory=list)
    changelog: list[OutRecord] = field(default_factory=list)
    # Per source topic: the offset after the last event whose output is pending.
    next_offsets: dict[str, int] = field(default_factory=dict)


@dataclass(kw_only=True)
class TransactionalOutbox:
    bootstrap_servers: str
    group_id: str
    source_topic: str
    transactional_prefix: str
    max_pending: int = 2000
    producer_options: Mapping[str, Any] = field(default_factory=dict)
    # Table changelogs must stay outside transactions (see module docstring); records for
    # these topics are written first, plainly, and ``on_changelog_written`` learns the last
    # offset written per (topic, partition) so the table's recovery can start there.
    changelog_topics: frozenset[str] = frozenset()
    on_changelog_written: Callable[[str, int, int], None] | None = None
    # Told, after each committed transaction, its source partition, its records and the last
    # offset written per destination (topic, partition): transactional tables apply their
    # writes then. Told too when a partition's open batch is dropped because it was fenced.
    on_committed: Callable[[int, list[OutRecord], dict[tuple[str, int], int]], None] | None = None
    on_dropped: Callable[[int], None] | None = None
    # A record the broker would refuse for its size would fail the whole transaction, every
    # time it is retried: it is replaced, before it is queued, by what ``on_oversized`` says.
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    on_oversized: OversizedHandler | None = None
    # Source topics whose processing also writes through another producer (Faust's, for its
    # table changelogs): ``flush_elsewhere`` is awaited before a transaction that commits
    # their offsets, so that no offset commits ahead of a table write it covers.
    written_elsewhere: frozenset[str] = frozenset()
    flush_elsewhere: Callable[[], Awaitable[None]] | None = None
    _pending: dict[int, _Pending] = field(default_factory=lambda: defaultdict(_Pending))
    _producers: dict[int, AIOKafkaProducer] = field(default_factory=dict)
    _changelog_producer: AIOKafkaProducer | None = None
    _changelog_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _locks: dict[int, asyncio.Lock] = field(default_factory=lambda: defaultdict(asyncio.Lock))

    def add(
        self,
        partition: int,
        offset: int,
        records: Iterable[OutRecord],
        *,
        topic: str | None = None,
    ) -> bool:
        """Queue the output of the event at ``offset`` of ``topic`` (default: the source topic).

        True when the partition should flush.
        """
        pending = self._pending[partition]
        changelog_topics = self.changelog_topics
        source = (topic or self.source_topic, offset)
        for record in self._bounded(records, partition, source):
            if record.topic in changelog_topics:
                pending.changelog.append(record)
            else:
                pending.records.append(record)
        pending.next_offsets[source[0]] = offset + 1
        return len(pending.records) >= self.max_pending

    def add_unsourced(self, partition: int, records: Iterable[OutRecord]) -> None:
        """Queue output that no consumed event caused (timers firing) with the partition's."""
        self._pending[partition].records.extend(self._bounded(records, partition, None))

    def _bounded(
        self, records: Iterable[OutRecord], partition: int, source: tuple[str, int] | None
    ) -> Iterator[OutRecord]:
        limit = self.max_record_bytes
        for record in records:
            if record_size(record) <= limit:
                yield record
                continue
            logger.warning(
                "output record for %s[%d] is %d bytes, over the %d-byte limit; replaced",
                record.topic,
                record.partition,
                record_size(record),
                limit,
            )
            if self.on_oversized is not None:
                yield from self.on_oversized(record, partition, source)

    def pending_partitions(self) -> list[int]:
        return [
            p for p, pending in self._pending.items() if pending.next_offsets or pending.records
        ]

    async def flush_all(self) -> None:
        # One producer per partition: their transactions can be in flight at the same time.
        await asyncio.gather(*(self.flush(partition) for partition in self.pending_partitions()))

    async def flush(self, partition: int) -> None:
        async with self._locks[partition]:
            pending = self._pending.pop(partition, None)
            if pending is None or (not pending.next_offsets and not pending.records):
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
                    if self.on_dropped is not None:
                        self.on_dropped(partition)
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
                    return
            raise OutboxCommitError(
                f"could not commit the output of {self.source_topic}[{partition}] "
                f"after {_COMMIT_ATTEMPTS} attempts"
            )

    async def _commit(self, partition: int, pending: _Pending) -> None:
        if pending.changelog:
            await self._write_changelog(pending.changelog)
        if self.flush_elsewhere is not None and not self.written_elsewhere.isdisjoint(
            pending.next_offsets
        ):
            await self.flush_elsewhere()
        producer = await self._producer_for(partition)
        last_offsets: dict[tuple[str, int], int] = {}
        async with producer.transaction():
            sent = await _send(producer, pending.records)
            # aiokafka commits even when a batch failed; raising here aborts the transaction.
            written = await asyncio.gather(*[future for future, _ in sent])
            for metadata, (topic, destination, count) in zip(
                written, (s for _, s in sent), strict=True
            ):
                last_offsets[topic, destination] = metadata.offset + count - 1
            if pending.next_offsets:
                await producer.send_offsets_to_transaction(
                    {
                        TopicPartition(topic, partition): offset
                        for topic, offset in pending.next_offsets.items()
                    },
                    self.group_id,
                )
        if self.on_committed is not None:
            self.on_committed(partition, pending.records, last_offsets)

    async def _write_changelog(self, records: list[OutRecord]) -> None:
        # Written before the transaction: if the transaction then fails, the table remembers
        # events whose output was aborted, which the table's users must tolerate (the dedupe
        # ledger does, by remembering the offset that created each entry).
        producer = await self._shared_changelog_producer()
        for sent, (topic, destination, count) in await _send(producer, records):
            metadata = await sent
            if self.on_changelog_written is not None:
                self.on_changelog_written(topic, destination, metadata.offset + count - 1)

    async def _shared_changelog_producer(self) -> AIOKafkaProducer:
        # Partitions flush concurrently (flush_all): without the lock each would start its own.
        async with self._changelog_lock:
            if self._changelog_producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    enable_idempotence=True,
                    acks="all",
                    linger_ms=5,
                    **self.producer_options,
                )
                await producer.start()
                self._changelog_producer = producer
            return self._changelog_producer

    async def _producer_for(self, partition: int) -> AIOKafkaProducer:
        producer = self._producers.get(partition)
        if producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                transactional_id=f"{self.transactional_prefix}-{partition}",
                enable_idempotence=True,
                acks="all",
                # Batches are built whole (create_batch/send_batch): waiting adds latency only.
                linger_ms=0,
                # A transaction is several requests in turn (add partitions, produce, add
                # offsets, commit); aiokafka's default 100 ms backoff between them showed as
                # tens of milliseconds per commit.
                retry_backoff_ms=20,
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
        if not self._producers:
            # Nothing owned any more (a rebalance, or the worker stopping): close the shared
            # changelog producer too; the next batch opens it again.
            await self._stop_changelog_producer()

    async def _stop_changelog_producer(self) -> None:
        async with self._changelog_lock:
            producer, self._changelog_producer = self._changelog_producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()


async def _send(
    producer: AIOKafkaProducer, records: list[OutRecord]
) -> list[tuple[asyncio.Future[Any], tuple[str, int, int]]]:
    """Send records in one batch per destination partition; the futures and what each holds."""
    by_destination: dict[tuple[str, int], list[OutRecord]] = defaultdict(list)
    for record in records:
        by_destination[record.topic, record.partition].append(record)
    sent: list[tuple[asyncio.Future[Any], tuple[str, int, int]]] = []
    for (topic, destination), group in by_destination.items():
        batch = producer.create_batch()
        count = 0
        for record in group:
            if batch.append(key=record.key, value=record.value, timestamp=None) is None:
                future = await producer.send_batch(batch, topic, partition=destination)
                sent.append((future, (topic, destination, count)))
                batch, count = producer.create_batch(), 0
                batch.append(key=record.key, value=record.value, timestamp=None)
            count += 1
        future = await producer.send_batch(batch, topic, partition=destination)
        sent.append((future, (topic, destination, count)))
    return sent
