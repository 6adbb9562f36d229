"""``clarion bench latency``: how long a ``critical`` event takes while digests are being sent.

Users have email on (and nothing else), so every notification goes to the local SMTP sink,
which runs in this process and notes when it accepted each message. On a file clock, the
bench publishes a backlog of ``low`` events and waits until the worker has committed them
all: one digest per user is then pending. It moves the clock past the end of their window,
so the sweep starts closing those digests, and at the same moment starts a paced stream of
``critical`` events (``rate`` per second for ``seconds``). For every critical event it takes
two latencies from the moment it handed the event to its producer:

* to the Delivery committed on the email topic: the arrival at a ``read_committed``
  consumer in the bench, which cannot read it before its transaction commits;
* to the SMTP sink accepting the message (``X-Clarion-Notification-Id``, joined to the
  event through the committed Delivery).
"""

from __future__ import annotations

import asyncio
import math
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.digest import set_clock
from bench.harness import (
    PARTITIONS,
    BenchBroker,
    bench_broker,
    load_preferences,
    measure_worker,
    publish,
    start_worker,
    wait_until_writable,
    worker_log,
)
from bench.sinks import SinkThread, running
from bench.workload import make_preferences
from pipeline.devsinks.recording import Recorder
from pipeline.devsinks.run import DevSinks
from pipeline.devsinks.smtp import ReceivedMail
from pipeline.settings import Settings

# The backlog arrives just inside a window (digest windows are aligned to the hour, users
# are on UTC); the clock then jumps just past its end, which makes every digest due at once.
BACKLOG_AT = datetime(2026, 12, 2, 9, 0, 1, tzinfo=UTC)
DIGESTS_DUE_AT = BACKLOG_AT + timedelta(hours=1)
TARGET_COMMITTED_P99_MS = 50.0
TARGET_ACCEPTED_P99_MS = 250.0
NOTIFICATION_ID_HEADER = "X-Clarion-Notification-Id"
# Failure bounds only (a stuck or hopelessly slow worker), never waited out on success.
BACKLOG_ALLOWANCE_S = 1800.0
DRAIN_ALLOWANCE_S = 180.0
# The sender stops at its count, or this long after the stream should have ended.
SEND_SLACK_S = 1.0


def preferences(user: str) -> bytes:
    return make_preferences(user, timezone="UTC", in_app=False, mute_social_email=False)


def low_event(n: int, users: int) -> tuple[bytes, bytes]:
    user = f"user-{n % users}"
    value = {
        "event_id": f"low-{n:08d}",
        "user_id": user,
        "category": "social",
        "priority": "low",
        "title": "Someone commented on your post",
        "body": "Hello! There is news about your account that you may want to read.",
    }
    return user.encode(), orjson.dumps(value)


def critical_event(n: int, users: int) -> tuple[str, bytes, bytes]:
    event_id = f"crit-{n:08d}"
    user = f"user-{n % users}"
    value = {
        "event_id": event_id,
        "user_id": user,
        "category": "security",
        "priority": "critical",
        "title": "New sign-in to your account",
        "body": "Someone signed in from a new device. If it was not you, reset your password.",
        "channels": ["email"],
    }
    return event_id, user.encode(), orjson.dumps(value)


class AcceptTimes(Recorder[ReceivedMail]):
    """The SMTP sink's recorder: when each notification id was accepted, and nothing else.

    It keeps no message: tens of thousands of parsed emails would cost the bench hundreds
    of MiB. The sink calls it on its own thread, just before it answers 250.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._at: dict[str, float] = {}

    def append(self, item: ReceivedMail) -> None:
        at = time.perf_counter()
        notification_id = str(item.message[NOTIFICATION_ID_HEADER] or "")
        with self._lock:
            self._at.setdefault(notification_id, at)  # the first acceptance counts

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            return dict(self._at)


class SmtpSinkThread(SinkThread):
    def __init__(self) -> None:
        super().__init__()
        self.accepted = AcceptTimes()

    def start(self) -> DevSinks:
        sinks = super().start()
        sinks.smtp.messages = self.accepted
        return sinks


@dataclass
class CommittedDeliveries:
    """What a ``read_committed`` consumer of the email topic saw, and when.

    Besides the arrival, the record's own timestamp (set when the worker's outbox wrote
    it, wall clock in ms) splits the first latency into "until written" and "until
    committed"; it is turned into this process's ``perf_counter`` time base on the way in.
    """

    critical_at: dict[str, float] = field(default_factory=dict)  # event id -> arrival
    critical_written_at: dict[str, float] = field(default_factory=dict)  # event id -> written
    notification_event: dict[str, str] = field(default_factory=dict)  # notification -> event
    digest_times: list[float] = field(default_factory=list)
    _wall_minus_perf: float = field(default_factory=lambda: time.time() - time.perf_counter())

    def add(self, value: bytes, at: float, written_ms: int) -> None:
        delivery = orjson.loads(value)
        if delivery.get("category") == "digest":
            self.digest_times.append(at)
        elif delivery.get("priority") == "critical":
            event_id = delivery["event_ids"][0]
            if event_id not in self.critical_at:
                self.critical_at[event_id] = at
                self.critical_written_at[event_id] = written_ms / 1000 - self._wall_minus_perf
            self.notification_event[delivery["notification_id"]] = event_id


async def watch_committed(consumer: AIOKafkaConsumer, seen: CommittedDeliveries) -> None:
    """Record every committed Delivery until cancelled."""
    while True:
        batches = await consumer.getmany(timeout_ms=100, max_records=10_000)
        at = time.perf_counter()
        for records in batches.values():
            for record in records:
                seen.add(record.value or b"{}", at, record.timestamp)


@dataclass(frozen=True, slots=True)
class Stream:
    sent_at: dict[str, float]  # event id -> the moment it was handed to the producer
    started: float
    ended: float
    most_behind_s: float  # how late the sender ever was against its schedule

    @property
    def rate(self) -> float:
        return len(self.sent_at) / (self.ended - self.started) if self.ended > self.started else 0


async def send_critical(
    bootstrap: str, topic: str, *, rate: float, seconds: float, users: int
) -> Stream:
    """Critical events at ``rate`` per second for ``seconds``, paced against a fixed schedule.

    Each send is due at ``start + n / rate``: a late one is sent at once and the next ones
    keep their times, so a slow moment does not shift (or stretch) the rest of the stream.
    """
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    count = max(1, round(rate * seconds))
    sent_at: dict[str, float] = {}
    acks: list[asyncio.Future[object]] = []
    most_behind = 0.0
    try:
        started = time.perf_counter()
        stop_at = started + seconds + SEND_SLACK_S
        for n in range(count):
            due = started + n / rate
            now = time.perf_counter()
            if now < due:
                await asyncio.sleep(due - now)
                now = time.perf_counter()
            if now > stop_at:
                break
            most_behind = max(most_behind, now - due)
            event_id, key, value = critical_event(n, users)
            sent_at[event_id] = now
            acks.append(await producer.send(topic, value, key=key))
        ended = time.perf_counter()
        await asyncio.gather(*acks)
    finally:
        await producer.stop()
    return Stream(sent_at=sent_at, started=started, ended=ended, most_behind_s=most_behind)


@dataclass(frozen=True, slots=True)
class Latencies:
    """Latencies in milliseconds of the critical events that were measured."""

    millis: list[float]
    expected: int

    @classmethod
    def between(cls, sent_at: dict[str, float], arrived_at: dict[str, float]) -> Latencies:
        found = [(arrived_at[e] - sent) * 1000 for e, sent in sent_at.items() if e in arrived_at]
        return cls(millis=sorted(found), expected=len(sent_at))

    def percentile(self, share: float) -> float:
        """Nearest rank: the smallest latency at least ``share`` of the events did not exceed."""
        if not self.millis:
            return math.nan
        return self.millis[max(0, math.ceil(share * len(self.millis)) - 1)]

    def describe(self, target_p99_ms: float) -> str:
        p99 = self.percentile(0.99)
        complete = len(self.millis) == self.expected
        verdict = "met" if complete and p99 < target_p99_ms else "NOT met"
        return (
            f"p50 {self.percentile(0.5):,.1f} ms, p90 {self.percentile(0.9):,.1f} ms, "
            f"p99 {p99:,.1f} ms, max {self.percentile(1.0):,.1f} ms "
            f"({len(self.millis):,} of {self.expected:,} measured); "
            f"target p99 < {target_p99_ms:g} ms: {verdict}"
        )


@dataclass(frozen=True, slots=True)
class Measurement:
    stream: Stream
    committed: CommittedDeliveries
    accepted_at: dict[str, float]  # event id -> acceptance by the SMTP sink
    digests_due_at: float  # when the clock moved past the backlog's window


async def measure(
    broker: BenchBroker,
    sink: SmtpSinkThread,
    clock: Path,
    worker: subprocess.Popen[bytes],
    *,
    rate: float,
    seconds: float,
    users: int,
) -> Measurement:
    topic = broker.topics.deliver("email")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    # Assigned, not subscribed: the consumer reads every partition from the first moment.
    consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
    committed = CommittedDeliveries()
    watching = asyncio.create_task(watch_committed(consumer, committed))
    try:
        set_clock(clock, DIGESTS_DUE_AT)
        digests_due_at = time.perf_counter()
        stream = await send_critical(
            broker.bootstrap, broker.topics.events, rate=rate, seconds=seconds, users=users
        )
        accepted_at = await drained(stream, committed, sink, worker)
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await consumer.stop()
    return Measurement(
        stream=stream, committed=committed, accepted_at=accepted_at, digests_due_at=digests_due_at
    )


async def drained(
    stream: Stream,
    committed: CommittedDeliveries,
    sink: SmtpSinkThread,
    worker: subprocess.Popen[bytes],
) -> dict[str, float]:
    """SMTP acceptance times by event id, once every critical event was committed and
    accepted, or when :data:`DRAIN_ALLOWANCE_S` has passed (then some are missing)."""
    deadline = time.monotonic() + DRAIN_ALLOWANCE_S
    while True:
        by_notification = sink.accepted.snapshot()
        accepted_at = {
            event_id: by_notification[notification_id]
            for notification_id, event_id in committed.notification_event.items()
            if notification_id in by_notification
        }
        done = len(committed.critical_at) >= len(stream.sent_at) and len(accepted_at) >= len(
            stream.sent_at
        )
        if done or time.monotonic() > deadline:
            return accepted_at
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}")
        await asyncio.sleep(0.1)  # sampling interval only: arrival times are taken as they come


def report(result: Measurement, *, rate: float, users: int, email_topic: str) -> None:
    stream, committed = result.stream, result.committed
    print(
        f"critical stream: {len(stream.sent_at):,} events in {stream.ended - stream.started:,.1f} s"
        f" = {stream.rate:,.1f}/s (asked {rate:g}/s); the sender was at most "
        f"{stream.most_behind_s * 1000:,.1f} ms behind its schedule",
        flush=True,
    )
    during = sum(result.digests_due_at <= t <= stream.ended for t in committed.digest_times)
    last = max(committed.digest_times, default=result.digests_due_at) - result.digests_due_at
    print(
        f"digests closed during the stream: {during:,} (of {len(committed.digest_times):,} seen, "
        f"{users:,} expected; the last one committed {last:,.1f} s after the window closed)"
    )
    to_commit = Latencies.between(stream.sent_at, committed.critical_at)
    to_sink = Latencies.between(stream.sent_at, result.accepted_at)
    to_written = Latencies.between(stream.sent_at, committed.critical_written_at)
    committed_line = to_commit.describe(TARGET_COMMITTED_P99_MS)
    print(f"produce -> Delivery committed on {email_topic}: {committed_line}")
    print(
        "  of which produce -> Delivery written by the worker's outbox (record timestamp, "
        f"ms resolution): p50 {to_written.percentile(0.5):,.1f} ms, "
        f"p99 {to_written.percentile(0.99):,.1f} ms"
    )
    print(f"produce -> SMTP sink accepted: {to_sink.describe(TARGET_ACCEPTED_P99_MS)}", flush=True)


def run_latency_bench(
    settings: Settings, *, backlog: int, users: int, rate: float, seconds: float
) -> None:
    if backlog < 1 or users < 1 or rate <= 0 or seconds <= 0:
        raise ValueError("the bench needs a backlog, users, a positive rate and a duration")
    with bench_broker(settings) as broker, running(SmtpSinkThread()) as sink:
        topics = broker.topics
        pending = min(backlog, users)
        print(
            f"{users:,} users with email only; a backlog of {backlog:,} low events "
            f"({pending:,} digests pending), then critical events at {rate:g}/s for "
            f"{seconds:g} s, {PARTITIONS} partitions ...",
            flush=True,
        )
        for topic in (topics.preferences, topics.events):
            asyncio.run(wait_until_writable(broker.bootstrap, topic, within=BACKLOG_ALLOWANCE_S))
        # Applied before the backlog arrives: else its events may be routed for users the
        # worker does not know yet (bench/harness.py, load_preferences).
        load_preferences(
            broker, [(f"user-{u}".encode(), preferences(f"user-{u}")) for u in range(users)]
        )
        clock = broker.workdir / "clock"
        set_clock(clock, BACKLOG_AT)
        asyncio.run(
            publish(broker.bootstrap, topics.events, [low_event(n, users) for n in range(backlog)])
        )
        worker = start_worker(broker, **sink.sinks.provider_env(), CLARION_CLOCK_FILE=str(clock))
        try:
            ingest = asyncio.run(
                asyncio.wait_for(
                    measure_worker(broker, topics.events, backlog, worker), BACKLOG_ALLOWANCE_S
                )
            )
            print(
                f"backlog committed: {backlog:,} low events at {ingest:,.0f} events/s", flush=True
            )
            result = asyncio.run(
                measure(broker, sink, clock, worker, rate=rate, seconds=seconds, users=users)
            )
        except (RuntimeError, TimeoutError):
            print(worker_log(broker))
            raise
        finally:
            worker.terminate()
            worker.wait(60)
        report(result, rate=rate, users=pending, email_topic=topics.deliver("email"))
