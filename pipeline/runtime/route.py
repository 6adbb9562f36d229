"""The route role: events, preferences and retries in batches, one checkpoint per partition.

The loop fetches what the broker has (``getmany``, ``read_committed``), runs every record
through its pure core (:class:`~agents.ingest.EventRouter`,
:class:`~agents.preferences.PreferencesUpdater`, :func:`~agents.retry.schedule_retry`), sweeps
the timers that are due, and commits each partition's outputs, state changes (dedupe,
preferences, timers: changelog records of transactional tables) and consumed offsets in one
Kafka transaction (:class:`~pipeline.kafka.outbox.TransactionalOutbox`). Then it fetches again:
a batch is whatever arrived meanwhile, so nothing waits for a timer when traffic is light and
batches grow by themselves under load.

Partitions come from a consumer group of the runtime's own (``<group>.route``) with the range
assignor, which gives partition *p* of every source topic to one member, so *p*'s state and
its offsets move together. A newly assigned partition is fenced first (its transactional
producer is registered, which aborts whatever the previous owner left open), its tables are
recovered from their changelogs, and only then is it positioned at its committed offsets,
re-read after the fence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor

from agents.ingest import EventRouter
from agents.preferences import PreferencesUpdater
from agents.records_out import utc_iso
from agents.rejections import rejection
from agents.release import Sweeper
from agents.retry import schedule_retry
from pipeline.kafka.outbox import OutboxCommitError, TransactionalOutbox
from pipeline.metrics import Metrics
from pipeline.runtime.delivery import heartbeat_interval
from pipeline.runtime.positions import seek_to_start
from schemas.clock import Clock
from schemas.structs import OutRecord, SourceMessage
from schemas.topics import TopicNames
from tables.dedupe import DedupeLedger
from tables.timers import TimerTable
from tables.txstore import TransactionalTable

logger = logging.getLogger(__name__)

_FETCH_TIMEOUT_MS = 200


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsumerConfig:
    """How the runtime's consumers join their group and read."""

    bootstrap_servers: str
    group_id: str
    client_id: str
    session_timeout: float
    max_records: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def consumer(self, **overrides: Any) -> AIOKafkaConsumer:
        session_ms = int(self.session_timeout * 1000)
        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "group_id": self.group_id,
            "client_id": self.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
            "session_timeout_ms": session_ms,
            "heartbeat_interval_ms": int(heartbeat_interval(self.session_timeout) * 1000),
            "max_poll_records": self.max_records,
            **self.options,
            **overrides,
        }
        return AIOKafkaConsumer(**settings)


@dataclass(kw_only=True)
class RouteRuntime:
    consumer_config: ConsumerConfig
    topics: TopicNames
    outbox: TransactionalOutbox
    tables: Sequence[TransactionalTable]
    router: EventRouter
    updater: PreferencesUpdater
    timers: TimerTable
    sweeper: Sweeper
    ledger: DedupeLedger
    clock: Clock
    metrics: Metrics
    sweep_interval: float
    # Where the offsets of the events and retry topics were committed before this runtime
    # (the Faust group of earlier versions): read once when this group has none.
    legacy_group_id: str | None = None
    # Told the partitions this worker owns after each rebalance (web views' owner routing).
    on_owned: Callable[[Iterable[int]], None] | None = None
    _consumer: AIOKafkaConsumer | None = None
    # Held while a batch is processed and committed, and by the rebalance listener: a batch
    # never straddles a change of assignment.
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    _done: asyncio.Event = field(default_factory=asyncio.Event)
    _next_sweep: float = 0.0
    _owned: set[int] = field(default_factory=set)
    _recovering: bool = False
    # Changed, before any await, when a rebalance reaches this worker: batches fetched
    # before it are not processed.
    _generation: int = 0
    # aiokafka logs and swallows what a rebalance listener raises; the loop raises it instead.
    _listener_failure: BaseException | None = None
    _observe_routing: Callable[[float], None] | None = None
    _committing: asyncio.Future[None] | None = None
    _sweep_turn: int = 0
    _sweep_busy: bool = False

    @property
    def source_topics(self) -> list[str]:
        """In the order a batch is processed."""
        names = self.topics
        return [
            names.preferences,
            names.preferences_repartition,
            names.events,
            names.events_repartition,
            names.retry,
        ]

    @property
    def _topic_order(self) -> dict[str, int]:
        return {topic: rank for rank, topic in enumerate(self.source_topics)}

    async def run(self) -> None:
        """Consume until :meth:`stop`; raises :class:`OutboxCommitError` when a commit fails."""
        consumer = self.consumer_config.consumer(
            partition_assignment_strategy=(RangePartitionAssignor,)
        )
        self._consumer = consumer
        try:
            await consumer.start()
            consumer.subscribe(self.source_topics, listener=_Listener(self))
            while not self._stopping.is_set():
                if self._listener_failure is not None:
                    raise self._listener_failure
                batches = await consumer.getmany(
                    timeout_ms=0 if self._mid_sweep else _FETCH_TIMEOUT_MS,
                    max_records=self.consumer_config.max_records,
                )
                # Read with no await since the fetch returned: a rebalance that begins later
                # changes it, and the batch is dropped (the listener re-positions partitions).
                generation = self._generation
                async with self._lock:
                    if generation == self._generation:
                        await self._process(consumer, batches)
                        await self._commit_behind()
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
        self, consumer: AIOKafkaConsumer, batches: Mapping[TopicPartition, Sequence[Any]]
    ) -> None:
        assigned = consumer.assignment()
        outbox = self.outbox
        flushing: list[Awaitable[None]] = []
        # Preferences first: an update fetched in the same batch as an event published after
        # it applies to that event, as it would have had they come in separate batches.
        order = self._topic_order
        for tp, messages in sorted(batches.items(), key=lambda item: order[item[0].topic]):
            if not messages:
                continue
            if tp not in assigned:
                continue
            if not self._ready(tp.partition):
                # Fenced since the fetch (another worker took the partition over): leave the
                # records to it; the rebalance that follows revokes the partition here.
                consumer.seek(tp, messages[0].offset)
                continue
            handle = self._handler(tp.topic)
            for message in messages:
                source = SourceMessage(
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                )
                if outbox.add(tp.partition, message.offset, handle(source), topic=tp.topic):
                    flushing.append(outbox.flush(tp.partition))
        if flushing:
            await asyncio.gather(*flushing)
        self._sweep_if_due()

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

    def _handler(self, topic: str) -> Callable[[SourceMessage], list[OutRecord]]:
        names = self.topics
        if topic in (names.events, names.events_repartition):
            return self._route_event
        if topic in (names.preferences, names.preferences_repartition):
            return self._guarded(self.updater.process)
        return self._guarded(lambda message: schedule_retry(self.timers, message, self.clock))

    def _route_event(self, message: SourceMessage) -> list[OutRecord]:
        if message.topic == self.topics.events:
            self.metrics.event_in()  # a forwarded event was counted where it was first read
        if self._observe_routing is None:
            self._observe_routing = self.metrics.agent_timer("clarion.ingest")
        started = time.perf_counter()
        records = self._guarded(self.router.process)(message)
        self._observe_routing(time.perf_counter() - started)
        return records

    def _guarded(
        self, process: Callable[[SourceMessage], list[OutRecord]]
    ) -> Callable[[SourceMessage], list[OutRecord]]:
        def guarded(message: SourceMessage) -> list[OutRecord]:
            try:
                return process(message)
            except Exception as exc:
                # A bug must not ack the record silently: park it on the invalid topic.
                logger.exception(
                    "processing failed for %s[%d]@%d",
                    message.topic,
                    message.partition,
                    message.offset,
                )
                at = utc_iso(self.clock())
                reason = f"internal error while processing: {exc!r}"
                return rejection(
                    self.router.writer, message, reason, at, event_id=None, user_id=None
                )

        return guarded

    def _sweep_if_due(self) -> None:
        """Sweep one partition's due timers per batch, in turn.

        A partition's sweep releases at most the sweeper's batch limit: between two
        partitions' sweeps the loop routes what arrived meanwhile, so a burst of digests
        closing does not hold up critical events behind it for the whole burst. While a
        round released something, the next round starts at once; otherwise it waits for
        the sweep interval.
        """
        now = time.monotonic()
        if now < self._next_sweep:
            return
        partitions = [p for p in sorted(self._owned) if self._ready(p)]
        if not partitions:
            self._next_sweep = now + self.sweep_interval
            return
        partition = partitions[self._sweep_turn % len(partitions)]
        self._sweep_turn += 1
        released = self.sweeper.sweep(partition)
        expired = self.ledger.expired(partition, now=self.clock().timestamp())
        self.ledger.table.stage(partition, expired)
        if released or expired:
            self.outbox.add_unsourced(partition, [*released, *expired])
            self._sweep_busy = True
        if self._sweep_turn % len(partitions) == 0:
            self._next_sweep = now if self._sweep_busy else now + self.sweep_interval
            self._sweep_busy = False

    @property
    def _mid_sweep(self) -> bool:
        """A round of sweeps is under way: fetch without waiting, to finish it promptly."""
        return self._next_sweep <= time.monotonic()

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
                legacy_topics=(self.topics.events, self.topics.retry),
                client_options=config.options,
                bootstrap_servers=config.bootstrap_servers,
            )
            self._owned.update(partitions)
            self._recovering = False
            consumer.resume(*assigned)
            if self.on_owned is not None:
                self.on_owned(sorted(self._owned))

    async def revoked(self, revoked: set[TopicPartition]) -> None:
        self._generation += 1
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
        if self.on_owned is not None:
            self.on_owned(sorted(self._owned))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: RouteRuntime) -> None:
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


__all__ = ["ConsumerConfig", "OutboxCommitError", "RouteRuntime"]
