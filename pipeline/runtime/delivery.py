"""Deliveries to external providers, on a consumer of their own instead of Faust's.

Faust's offset tracking commits these topics late (they are written in transactions, and its
gap handling mishandles the commit markers), so a rebalance made the next owner send again
what had long been sent; and a SIGKILLed worker's deliveries stopped for its 60 s session.
Here the offsets are ours (:class:`~pipeline.runtime.offsets.OffsetTracker`):

* a record's offset is finished only once the broker acknowledged every record its attempt
  produced (the ``sending`` status included), and committed at most every
  :data:`COMMIT_INTERVAL`: a crash repeats the attempts in flight and those finished since
  the last commit, never loses one;
* before giving partitions up in a rebalance, the attempts in flight on them finish and their
  offsets commit (:class:`_Handover`): the next owner sends nothing twice;
* a graceful stop does the same, then leaves the group so the partitions move at once;
* the session is short (``CLARION_RUNTIME_SESSION_TIMEOUT``): a dead worker's partitions move
  within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.errors import KafkaError

from agents.delivery.attempt import ChannelSender
from pipeline.metrics import Metrics
from pipeline.runtime.consumers import ConsumerConfig
from pipeline.runtime.offsets import OffsetTracker
from pipeline.runtime.positions import seek_to_start
from pipeline.settings import Settings
from schemas.structs import OutRecord
from schemas.topics import TopicNames

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

# Committed offsets advance at most this often (and on every revoke and stop): a SIGKILL
# repeats what finished in the last interval, besides what was in flight.
COMMIT_INTERVAL = 0.5
# How long a revoke or a stop waits for the attempts in flight; past it, they are repeated by
# the next owner (a provider that never answers must not hold the whole group).
DRAIN_TIMEOUT = 30.0
# getmany waits at most this long, so a stop is noticed promptly.
POLL_TIMEOUT_MS = 200

# The invalid record for a delivery that could not be attempted (undecodable, or a bug).
Unprocessable = Callable[[Any, Exception], OutRecord]


class DeliveryRuntime:
    """Consumes the channels' topics and hands each delivery to its :class:`ChannelSender`.

    ``senders`` names the channels this runtime serves (a worker may serve a subset). Call
    :meth:`run` once; it returns after :meth:`stop` and raises if the loop broke (the caller
    crashes the worker: deliveries must not silently stop).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        topics: TopicNames,
        senders: Mapping[str, ChannelSender],
        unprocessable: Unprocessable,
        metrics: Metrics,
    ) -> None:
        self._settings = settings
        self._senders = {topics.deliver(channel): sender for channel, sender in senders.items()}
        # Provider round trips and rate-limit waits included: the time a record holds a slot.
        self._observe = {
            topics.deliver(channel): metrics.agent_timer(f"clarion.deliver.{channel}")
            for channel in senders
        }
        self._unprocessable = unprocessable
        self._metrics = metrics
        self._concurrency = settings.delivery.concurrency
        self._tracker = OffsetTracker()
        self._committed: dict[TopicPartition, int] = {}
        # Bumped by each revoke: records fetched before it are not started (the next owner,
        # maybe this worker again, reads them from the committed offset).
        self._epoch = 0
        # Bumped per partition when it is forgotten: a late attempt must not finish the
        # same offset fetched again under a later assignment.
        self._generations: dict[TopicPartition, int] = {}
        self._tasks: dict[asyncio.Task[None], TopicPartition] = {}
        self._failure: BaseException | None = None
        self._stopping = asyncio.Event()
        self._done = asyncio.Event()
        self._started = False
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._slots: asyncio.Semaphore | None = None
        self._commit_lock: asyncio.Lock | None = None

    # --- lifecycle ------------------------------------------------------------------

    async def run(self) -> None:
        # No channel here (a worker given other roles): no consumer to join the group with.
        if self._stopping.is_set() or self._started or not self._senders:
            return
        self._started = True
        self._slots = asyncio.Semaphore(self._concurrency)
        self._commit_lock = asyncio.Lock()
        try:
            self._producer = self._new_producer()
            await self._producer.start()
            try:
                self._consumer = self._new_consumer()
                await self._consumer.start()
                try:
                    self._consumer.subscribe(list(self._senders), listener=_Handover(self))
                    await self._consume()
                finally:
                    await self._drain(set(self._tasks.values()))
                    await self._commit(force=True)
                    # Leaves the group: the partitions move to another worker at once.
                    await self._consumer.stop()
                    logger.info("delivery runtime stopped: offsets committed, group left")
            finally:
                await self._producer.stop()
        finally:
            self._done.set()

    async def stop(self) -> None:
        """Stop fetching, finish what is in flight (bounded), commit, leave; idempotent."""
        self._stopping.set()
        if self._started:
            await self._done.wait()

    def _new_consumer(self) -> AIOKafkaConsumer:
        settings = self._settings
        group_id = f"{settings.group_id}.deliver"
        config = ConsumerConfig(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=group_id,
            client_id=group_id,
            session_timeout=settings.runtime_session_timeout,
            max_records=settings.commit_batch,
            options=settings.kafka_options,
        )
        return config.consumer(
            partition_assignment_strategy=(RoundRobinPartitionAssignor,),
            # A revoke may wait DRAIN_TIMEOUT for attempts in flight: the group waits for it.
            rebalance_timeout_ms=int((DRAIN_TIMEOUT + settings.runtime_session_timeout) * 1000),
        )

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._settings.bootstrap_servers,
            enable_idempotence=True,
            acks="all",
            **self._settings.kafka_options,
        )

    # --- the loop -------------------------------------------------------------------

    async def _consume(self) -> None:
        assert self._consumer is not None
        committer = asyncio.create_task(self._commit_periodically())
        try:
            while not self._stopping.is_set():
                self._raise_failure()
                if committer.done():
                    committer.result()  # a committer that died must not go unnoticed
                    raise RuntimeError("the delivery offset committer stopped")
                for epoch, tp, record in await self._fetch():
                    if not await self._take_slot(epoch):
                        if self._stopping.is_set() or self._failure is not None:
                            break
                        continue  # fetched before a revoke: read again from the commit
                    self._start(tp, record)
            self._raise_failure()
        finally:
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer

    async def _fetch(self) -> list[tuple[int, TopicPartition, Any]]:
        """The next records to start, partitions in turn, each with the epoch it was read in.

        Asked partition by partition: aiokafka hands out all it fetched of one partition
        before the next, and a backlog on one (thousands of emails behind a rate limit) would
        hold up every other partition and channel. No more than can start soon either: the
        loop must come back here well within max_poll_interval, whatever the rate limits.
        """
        assert self._consumer is not None
        consumer = self._consumer
        assigned = sorted(consumer.assignment())
        share = max(1, self._concurrency // max(1, len(assigned)))
        fetched: list[tuple[int, TopicPartition, list[Any]]] = []
        for tp in assigned:
            # A revoke may come during any of these: records keep the epoch they came in.
            batch = await consumer.getmany(tp, timeout_ms=0, max_records=share)
            fetched.extend((self._epoch, got, records) for got, records in batch.items())
        if not fetched:
            batch = await consumer.getmany(
                timeout_ms=POLL_TIMEOUT_MS, max_records=self._concurrency
            )
            fetched = [(self._epoch, got, records) for got, records in batch.items()]
        return interleave(fetched)

    async def _take_slot(self, epoch: int) -> bool:
        """Wait for a free slot; False (slot given back) if the record must not start now."""
        assert self._slots is not None
        await self._slots.acquire()
        if self._stopping.is_set() or epoch != self._epoch or self._failure is not None:
            self._slots.release()
            return False
        return True

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _start(self, tp: TopicPartition, record: Any) -> None:
        self._tracker.start(tp, record.offset)
        generation = self._generations.get(tp, 0)
        task = asyncio.create_task(self._deliver(tp, record, generation))
        self._tasks[task] = tp
        task.add_done_callback(self._tasks.pop)

    async def _deliver(self, tp: TopicPartition, record: Any, generation: int) -> None:
        assert self._slots is not None
        try:
            await self._attempt(record)
        except Exception as exc:
            # Its outputs may not be on the broker: its offset stays unfinished and the loop
            # raises this, which crashes the worker.
            logger.exception("delivery %s[%d]@%d not published", *_where(record))
            if self._failure is None:
                self._failure = exc
        else:
            if self._generations.get(tp, 0) == generation:
                self._tracker.finish(tp, record.offset)
        finally:
            self._slots.release()

    async def _attempt(self, record: Any) -> None:
        started = time.perf_counter()
        announced: list[Awaitable[Any]] = []

        async def announce(sending: OutRecord) -> None:
            announced.append(await self._send(sending))

        try:
            delivery = orjson.loads(record.value)
            outputs = await self._senders[record.topic].attempt(
                delivery, record.partition, announce
            )
        except Exception as exc:
            # Undecodable or a bug: park it where an operator will look, never drop it.
            logger.exception("delivery %s[%d]@%d failed", *_where(record))
            outputs = [self._unprocessable(record, exc)]
        self._observe[record.topic](time.perf_counter() - started)
        sent = [await self._send(output) for output in outputs]
        await asyncio.gather(*announced, *sent)

    async def _send(self, record: OutRecord) -> Awaitable[Any]:
        """Hand to the producer; the future resolves once the broker has it."""
        assert self._producer is not None
        future: Awaitable[Any] = await self._producer.send(
            record.topic, record.value, key=record.key, partition=record.partition
        )
        return future

    # --- offsets and rebalances -----------------------------------------------------

    async def _commit_periodically(self) -> None:
        while True:
            await asyncio.sleep(COMMIT_INTERVAL)  # a cadence, not a wait for a condition
            await self._commit()
            try:
                # Not asyncio.wait_for: under Python 3.11 it swallows a cancellation that
                # comes as the export finishes, and the loop's stop waits for this task.
                async with asyncio.timeout(COMMIT_INTERVAL):
                    await self._export_lag()
            except (KafkaError, TimeoutError):  # rebalancing: the next tick tries again
                logger.debug("delivery consumer lag unavailable", exc_info=True)

    async def _export_lag(self) -> None:
        """Records of each assigned partition after the last one finished here."""
        assert self._consumer is not None
        lag = []
        for tp in self._consumer.assignment():
            # None until the partition's first fetch response.
            highwater: int | None = self._consumer.highwater(tp)
            if highwater is None:
                continue
            processed = self._tracker.committable(tp) if self._tracker.in_flight(tp) else None
            if processed is None:
                # Nothing in flight: done up to the fetch position, which (unlike one past
                # the last record) is past the transaction markers too.
                processed = await self._consumer.position(tp)
            lag.append((tp.topic, tp.partition, max(0, highwater - processed)))
        self._metrics.set_delivery_lag(sorted(lag))

    async def _commit(self, tps: set[TopicPartition] | None = None, *, force: bool = False) -> None:
        """Commit the offsets that advanced; a failed periodic commit is retried by the next
        one, a failed forced one (revoke, stop) means repeats for the next owner."""
        assert self._consumer is not None
        assert self._commit_lock is not None
        async with self._commit_lock:
            due = {
                tp: offset
                for tp, offset in self._tracker.positions().items()
                if isinstance(tp, TopicPartition)
                and (tps is None or tp in tps)
                and offset > self._committed.get(tp, -1)
            }
            if not due:
                return
            try:
                await self._consumer.commit(due)
            except KafkaError as exc:
                log = logger.error if force else logger.warning
                log("delivery offsets %s not committed: %r", due, exc)
                return
            self._committed.update(due)

    async def _drain(self, tps: set[TopicPartition]) -> None:
        """Wait (bounded) for the attempts in flight on ``tps``."""
        pending = [task for task, tp in self._tasks.items() if tp in tps]
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)
        if late:
            logger.warning(
                "%d deliveries still in flight after %.0f s; the next owner repeats them",
                len(late),
                DRAIN_TIMEOUT,
            )

    async def take_over(self, assigned: set[TopicPartition]) -> None:
        """Partitions this group never committed start where Faust's group of earlier
        versions left them (an upgrade re-sends nothing delivered), else at the beginning."""
        consumer = self._consumer
        assert consumer is not None
        # Before any await: nothing is fetched from an unsettled position.
        consumer.pause(*assigned)
        try:
            settings = self._settings
            await seek_to_start(
                consumer,
                assigned,
                legacy_group_id=settings.group_id,
                legacy_topics=set(self._senders),
                client_options=settings.kafka_options,
                bootstrap_servers=settings.bootstrap_servers,
                reposition_committed=False,
            )
        finally:
            consumer.resume(*assigned)

    async def hand_over(self, revoked: set[TopicPartition]) -> None:
        """Partitions are being revoked: start none of their records, let the ones in flight
        finish (bounded), commit, forget them."""
        logger.info("delivery partitions revoked: %s", _names(revoked))
        self._epoch += 1
        await self._drain(revoked)
        await self._commit(revoked, force=True)
        self._tracker.forget(revoked)
        for tp in revoked:
            self._committed.pop(tp, None)
            self._generations[tp] = self._generations.get(tp, 0) + 1


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    """Finish and commit before the partitions go: a graceful rebalance sends nothing twice."""

    def __init__(self, runtime: DeliveryRuntime) -> None:
        self._runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runtime.hand_over(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("delivery partitions assigned: %s", _names(assigned))
        await self._runtime.take_over(set(assigned))


def interleave(
    fetched: list[tuple[int, TopicPartition, list[Any]]],
) -> list[tuple[int, TopicPartition, Any]]:
    """One record of each partition in turn; each partition's records keep their order."""
    longest = max((len(records) for _, _, records in fetched), default=0)
    return [
        (epoch, tp, records[i])
        for i in range(longest)
        for epoch, tp, records in fetched
        if i < len(records)
    ]


def _names(tps: set[TopicPartition]) -> str:
    return ",".join(sorted(f"{tp.topic}:{tp.partition}" for tp in tps)) or "none"


def _where(record: Any) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset
