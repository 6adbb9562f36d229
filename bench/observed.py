"""What the faults bench sends and what it sees committed, with the time of each.

* :func:`send_stream`: events at a steady pace, each due at ``start + n / rate`` (a late one
  goes at once and the next keep their times), on the partition murmur2 of its user gives,
  as Clarion's own producers choose; only events the broker acknowledged count as accepted.
* :class:`DeliveryLog`: every Delivery on the channel topics as a ``read_committed`` consumer
  reads it, so only what a committed transaction wrote, and when it arrived here;
* :class:`StatusLog`: when each email attempt was announced (``sending``) and reported
  ``sent`` on the status topic.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from bench.harness import PARTITIONS
from bench.workload import make_preferences
from schemas.partitioner import partition_for_key

# The broker may be down for a restart (20 s or so on a loaded machine): batches wait in the
# producer meanwhile instead of expiring, and are large enough to hold what comes in that time.
PRODUCE_TIMEOUT_MS = 180_000
PRODUCE_BATCH_BYTES = 512 * 1024
_EMAIL = b'"channel":"email"'


def user_of(n: int, users: int) -> str:
    return f"user-{n % users}"


def preferences(user: str) -> bytes:
    return make_preferences(user, timezone="UTC", mute_social_email=False)


def event(n: int, users: int) -> tuple[str, bytes, bytes]:
    """Event ``n``: normal priority, so delivered at once on both channels (no caps, no quiet
    hours in the users' preferences)."""
    event_id = f"ev-{n:07d}"
    user = user_of(n, users)
    value = {
        "event_id": event_id,
        "user_id": user,
        "category": "account",
        "priority": "normal",
        "title": "Your weekly summary is ready",
        "body": "Hello! There is news about your account that you may want to read.",
        "channels": ["email", "in_app"],
    }
    return event_id, user.encode(), orjson.dumps(value)


@dataclass
class Stream:
    """Filled in while the stream runs: read it after :func:`send_stream` returned."""

    partition_of: dict[str, int] = field(default_factory=dict)  # accepted event -> partition
    failed: int = 0
    running: asyncio.Event = field(default_factory=asyncio.Event)  # set once started is
    started: float = 0.0
    ended: float = 0.0  # the last event handed to the producer
    most_behind_s: float = 0.0  # how late the sender ever was against its schedule


async def send_stream(
    bootstrap: str, topic: str, stream: Stream, *, count: int, seconds: float, users: int
) -> None:
    rate = count / seconds
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=PRODUCE_BATCH_BYTES,
        request_timeout_ms=PRODUCE_TIMEOUT_MS,
    )
    await producer.start()
    acks: list[asyncio.Future[None]] = []
    try:
        stream.started = time.perf_counter()
        stream.running.set()
        for n in range(count):
            due = stream.started + n / rate
            now = time.perf_counter()
            if now < due:
                await asyncio.sleep(due - now)  # the stream's schedule, not a wait for a state
                now = time.perf_counter()
            stream.most_behind_s = max(stream.most_behind_s, now - due)
            event_id, key, value = event(n, users)
            partition = partition_for_key(key, PARTITIONS)
            sent = await producer.send(topic, value, key=key, partition=partition)
            acks.append(asyncio.ensure_future(_note(sent, stream, event_id, partition)))
        stream.ended = time.perf_counter()
        await asyncio.gather(*acks)
    finally:
        await producer.stop()


async def _note(
    sent: asyncio.Future[object], stream: Stream, event_id: str, partition: int
) -> None:
    try:
        await sent
    except KafkaError:
        stream.failed += 1
    else:
        stream.partition_of[event_id] = partition


@dataclass(frozen=True, slots=True)
class Committed:
    topic: str
    partition: int
    offset: int
    notification_id: str
    event_id: str
    at: float  # perf_counter when this bench read it


@dataclass
class DeliveryLog:
    records: list[Committed] = field(default_factory=list)
    # (topic, partition) -> the last arrival: the scenario's "served since" checks read it.
    last_at: dict[tuple[str, int], float] = field(default_factory=dict)

    async def follow(self, bootstrap: str, topics: Sequence[str]) -> None:
        """Read ``topics`` from the beginning until cancelled."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            # Assigned, not subscribed: every partition from the first moment, no group.
            consumer.assign([TopicPartition(t, p) for t in topics for p in range(PARTITIONS)])
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
                at = time.perf_counter()
                for tp, records in batches.items():
                    for record in records:
                        delivery = orjson.loads(record.value or b"{}")
                        self.records.append(
                            Committed(
                                topic=tp.topic,
                                partition=tp.partition,
                                offset=record.offset,
                                notification_id=delivery["notification_id"],
                                event_id=delivery["event_ids"][0],
                                at=at,
                            )
                        )
                    if records:
                        self.last_at[(tp.topic, tp.partition)] = at
        finally:
            await consumer.stop()


@dataclass
class StatusLog:
    """The email attempts' ``sending`` and ``sent`` statuses, by record timestamp (the
    moment the worker handed them to its producer, wall clock): what was in flight when a
    worker was killed."""

    sending: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sent: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    async def follow(self, bootstrap: str, topic: str) -> None:
        """Read ``topic`` from the beginning until cancelled."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        self._add(record.value or b"", record.timestamp / 1000)
        finally:
            await consumer.stop()

    def _add(self, value: bytes, at: float) -> None:
        # Most statuses are of other kinds and channels: not worth decoding.
        if _EMAIL not in value:
            return
        status = orjson.loads(value)
        if status.get("status") == "sending":
            self.sending[status["notification_id"]].append(at)
        elif status.get("status") == "sent":
            self.sent[status["notification_id"]].append(at)
