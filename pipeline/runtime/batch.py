"""The batch runtime's loop: fetch, run each record through its core, one checkpoint per partition.

The loop fetches what the broker has (``getmany``, ``read_committed``), hands every record to
its :class:`Stage`'s handler for its topic (a pure core from agents/), lets the stage add
output of its own (the timers that are due), and commits each partition's outputs, state
changes (changelog records of transactional tables) and consumed offsets in one Kafka
transaction (:class:`~pipeline.kafka.outbox.TransactionalOutbox`). Then it fetches again: a
batch is whatever arrived meanwhile, so nothing waits for a timer when traffic is light and
batches grow by themselves under load.

Partitions come from a consumer group of the stage's own with the range assignor, which gives
partition *p* of every source topic to one member, so *p*'s state and its offsets move
together. A newly assigned partition is fenced first (its transactional producer is
registered, which aborts whatever the previous owner left open), its tables are recovered
from their changelogs, and only then is it positioned at its committed offsets, re-read after
the fence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from pipeline.kafka.outbox import TransactionalOutbox
from pipeline.runtime.consumers import ConsumerConfig
from pipeline.runtime.positions import seek_to_start
from schemas.structs import OutRecord, SourceMessage
from tables.txstore import TransactionalTable

logger = logging.getLogger(__name__)

_FETCH_TIMEOUT_MS = 200

Handler = Callable[[SourceMessage], list[OutRecord]]


class Stage(Protocol):
    """What one role does with the records of its topics (pipeline/runtime/route.py, store.py)."""

    @property
    def source_topics(self) -> Sequence[str]:
        """In the order a batch is processed."""
        ...

    @property
    def legacy_topics(self) -> Sequence[str]:
        """Source topics an earlier version consumed in Faust's group (runtime/positions.py)."""
        ...

    @property
    def leading_topics(self) -> Sequence[str]:
        """Source topics whose backlog, as it stands when a partition is assigned, is read
        before the partition's other topics: Kafka orders nothing across topics, and a
        fetch may hand out one topic's backlog before another's."""
        ...

    @property
    def tables(self) -> Sequence[TransactionalTable]:
        """The state this stage reads and writes, recovered for every partition it holds."""
        ...

    def handler(self, topic: str) -> Handler: ...

    def unprocessable(self, message: SourceMessage, exc: Exception) -> list[OutRecord]:
        """What a handler that raised writes instead: a record on the invalid topic."""
        ...

    def after_batch(self, ready: Sequence[int]) -> list[tuple[int, list[OutRecord]]]:
        """Output of the stage's own per partition (no source offset), e.g. timers due."""
        ...

    @property
    def has_more(self) -> bool:
        """Work of the stage's own is under way: fetch without waiting, to go on promptly."""
        ...

    def released(self, partitions: Sequence[int]) -> None:
        """These partitions are no longer held here."""
        ...


@dataclass(kw_only=True)
class BatchRuntime:
    consumer_config: ConsumerConfig
    stage: Stage
    outbox: TransactionalOutbox
    # Where an earlier version's Faust group committed the stage's legacy topics: read once
    # for a partition this group never committed.
    legacy_group_id: str | None = None
    # Told the partitions this worker owns after each rebalance (web views' owner routing).
    on_owned: Callable[[Iterable[int]], None] | None = None
    # The longest a partition's other topics wait for its leading topics' backlog.
    catch_up_timeout: float = 60.0
    _consumer: AIOKafkaConsumer | None = None
    # Held while a batch is processed and committed, and by the rebalance listener: a batch
    # never straddles a change of assignment.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _owned: set[int] = field(default_factory=set)
    _recovering: bool = False
    # Changed, before any await, when a rebalance reaches this worker: batches fetched
    # before it are not processed.
    _generation: int = 0
    # aiokafka logs and swallows what a rebalance listener raises; the loop raises it instead.
    _listener_failure: BaseException | None = None
    _committing: asyncio.Future[None] | None = None
    # Per partition still catching up: the leading topics' offsets to reach, and by when.
    _catching_up: dict[int, tuple[dict[TopicPartition, int], float]] = field(default_factory=dict)

    @property
    def tables(self) -> Sequence[TransactionalTable]:
        return self.stage.tables

    async def run(self) -> None:
        """Consume until :meth:`stop`; raises :class:`OutboxCommitError` when a commit fails."""
        consumer = self.consumer_config.consumer(
            partition_assignment_strategy=(RangePartitionAssignor,)
        )
        self._consumer = consumer
        topic_order = {topic: rank for rank, topic in enumerate(self.stage.source_topics)}
        try:
            await consumer.start()
            consumer.subscribe(list(self.stage.source_topics), listener=_Listener(self))
            while not self._stopping.is_set():
                if self._listener_failure is not None:
                    raise self._listener_failure
                batches = await consumer.getmany(
                    timeout_ms=0 if self.stage.has_more else _FETCH_TIMEOUT_MS,
                    max_records=self.consumer_config.max_records,
                )
                # Read with no await since the fetch returned: a rebalance that begins later
                # changes it, and the batch is dropped (the listener re-positions partitions).
                generation = self._generation
                async with self._lock:
                    if generation == self._generation:
                        await self._process(consumer, batches, topic_order)
                        await self._commit_behind()
                        await self._resume_caught_up(consumer)
        finally:
            try:
                async with self._lock:
                    await self._committed()
                    await self._let_go(self._owned)
                # Leaves the group: the partitions move to the others at once.
                await consumer.stop()
            finally:
                self._done.set()

    async def stop(self) -> None:
        """End the loop after the batch in hand; wait until it has committed and left."""
        self._stopping.set()
        if self._consumer is not None:
            await self._done.wait()

    @property
    def started(self) -> bool:
        return self._consumer is not None

    @property
    def recovered(self) -> bool:
        """Started, and every assigned partition's state recovered."""
        return self._consumer is not None and not self._recovering

    @property
    def owned(self) -> list[int]:
        """Partitions assigned here whose state is recovered."""
        return sorted(self._owned)

    async def lag(self) -> list[tuple[str, int, int]]:
        """(topic, partition, records behind) per assigned partition: the last stable offset
        (what a read_committed reader can reach) minus the position, which runs ahead of the
        committed offset by at most the batch being processed."""
        consumer = self._consumer
        if consumer is None:
            return []
        lag = []
        for tp in consumer.assignment():
            end = consumer.last_stable_offset(tp)
            if end is None:
                continue
            position = await consumer.position(tp)
            lag.append((tp.topic, tp.partition, max(0, end - position)))
        return sorted(lag)

    async def _process(
        self,
        consumer: AIOKafkaConsumer,
        batches: Mapping[TopicPartition, Sequence[Any]],
        topic_order: Mapping[str, int],
    ) -> None:
        assigned = consumer.assignment()
        outbox = self.outbox
        flushing: list[Awaitable[None]] = []
        for tp, messages in sorted(batches.items(), key=lambda item: topic_order[item[0].topic]):
            if not messages:
                continue
            if tp not in assigned:
                continue
            if not self._ready(tp.partition):
                # Fenced since the fetch (another worker took the partition over): leave the
                # records to it; the rebalance that follows revokes the partition here.
                consumer.seek(tp, messages[0].offset)
                continue
            handle = self.stage.handler(tp.topic)
            for message in messages:
                source = SourceMessage(
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                )
                if outbox.add(
                    tp.partition, message.offset, self._guarded(handle, source), topic=tp.topic
                ):
                    flushing.append(outbox.flush(tp.partition))
        if flushing:
            await asyncio.gather(*flushing)
        ready = [p for p in sorted(self._owned) if self._ready(p)]
        for partition, records in self.stage.after_batch(ready):
            outbox.add_unsourced(partition, records)

    def _guarded(self, handle: Handler, message: SourceMessage) -> list[OutRecord]:
        try:
            return handle(message)
        except Exception as exc:
            # A bug must not ack the record silently: the stage parks it on the invalid topic.
            logger.exception(
                "processing failed for %s[%d]@%d", message.topic, message.partition, message.offset
            )
            return self.stage.unprocessable(message, exc)

    async def _commit_behind(self) -> None:
        """Start committing what was just processed, once the previous commit has finished.

        The next batch is fetched and processed while this one commits (its writes are
        visible through the tables' overlays), so a record arriving during a commit waits for
        that one and its own, not for a whole extra cycle.
        """
        await self._committed()
        self._committing = asyncio.ensure_future(self.outbox.flush_all())

    async def _committed(self) -> None:
        """Wait for the commit in flight; raises what it raised (OutboxCommitError)."""
        committing, self._committing = self._committing, None
        if committing is not None:
            await committing

    def _ready(self, partition: int) -> bool:
        return all(table.is_ready(partition) for table in self.tables)

    # -- rebalances ----------------------------------------------------------------------

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self._consumer
        assert consumer is not None
        # Before any await: nothing is fetched for these partitions until they are fenced,
        # recovered and positioned at offsets read after the fence.
        self._generation += 1
        consumer.pause(*assigned)
        async with self._lock:
            await self._committed()
            self._recovering = True
            partitions = sorted({tp.partition for tp in assigned})
            # Fenced first: the committed offsets and the changelogs are final afterwards.
            await self.outbox.claim(partitions)
            for table in self.tables:
                await table.recover(partitions)
            config = self.consumer_config
            await seek_to_start(
                consumer,
                assigned,
                legacy_group_id=self.legacy_group_id,
                legacy_topics=tuple(self.stage.legacy_topics),
                client_options=config.options,
                bootstrap_servers=config.bootstrap_servers,
            )
            self._owned.update(partitions)
            self._recovering = False
            await self._catch_up_first(consumer, assigned)
            if self.on_owned is not None:
                self.on_owned(sorted(self._owned))

    async def _catch_up_first(
        self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]
    ) -> None:
        """Resume the leading topics; the others of a partition once its leading topics have
        reached the offsets they had now (at most ``catch_up_timeout`` later)."""
        leading_topics = set(self.stage.leading_topics)
        leading = [tp for tp in assigned if tp.topic in leading_topics]
        ends = await consumer.end_offsets(leading) if leading else {}
        deadline = time.monotonic() + self.catch_up_timeout
        for tp in leading:
            if await consumer.position(tp) < ends[tp]:
                targets, _ = self._catching_up.setdefault(tp.partition, ({}, deadline))
                targets[tp] = ends[tp]
        consumer.resume(
            *(tp for tp in assigned if tp in leading or tp.partition not in self._catching_up)
        )

    async def _resume_caught_up(self, consumer: AIOKafkaConsumer) -> None:
        assigned = consumer.assignment()
        now = time.monotonic()
        for partition, (targets, deadline) in list(self._catching_up.items()):
            behind = [tp for tp, end in targets.items() if await consumer.position(tp) < end]
            if behind and now < deadline:
                continue
            if behind:
                logger.warning(
                    "partition %d: %s not caught up after %.0f s; routing the rest anyway",
                    partition,
                    behind,
                    self.catch_up_timeout,
                )
            del self._catching_up[partition]
            consumer.resume(*(tp for tp in assigned if tp.partition == partition))

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        self._generation += 1
        for tp in revoked:
            self._catching_up.pop(tp.partition, None)
        async with self._lock:
            await self._committed()
            await self._let_go({tp.partition for tp in revoked})

    async def _let_go(self, partitions: Iterable[int]) -> None:
        """Commit what is pending for ``partitions`` and forget their uncommitted state."""
        gone = sorted(partitions)
        await self.outbox.release(gone)
        for table in self.tables:
            table.release(gone)
        self._owned.difference_update(gone)
        self.stage.released(gone)
        if self.on_owned is not None:
            self.on_owned(sorted(self._owned))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: BatchRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await self.runtime.revoked(revoked)
        except Exception as exc:
            self.runtime._listener_failure = exc
            raise

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        try:
            await self.runtime.assigned(assigned)
        except Exception as exc:
            self.runtime._listener_failure = exc
            raise


__all__ = ["BatchRuntime", "Handler", "Stage"]
