"""What every ``clarion bench`` scenario shares: a fresh broker, a baseline and a worker."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError, KafkaTimeoutError
from aiokafka.structs import RecordMetadata

from bench.progress import Quarters, from_samples
from pipeline.app import topic_specs
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.local import LocalKafka, die_with_parent, free_port
from pipeline.runner import start_dev_sinks_thread
from pipeline.settings import Settings
from schemas.topics import TopicNames

PARTITIONS = 8
PREFIX = "bench."
APP_ID = "bench-clarion"
PASSTHROUGH_IN = "bench.passthrough.in"
PASSTHROUGH_OUT = "bench.passthrough.out"
# Produce batches of the batch passthrough: well under the broker's 1 MB message limit.
BATCH_BYTES = 512 * 1024
# A failure bound for a worker that does not get going, never waited out on success.
STARTUP_S = 180.0


@dataclass(frozen=True, kw_only=True)
class BenchBroker:
    bootstrap: str
    settings: Settings
    topics: TopicNames
    workdir: Path
    # The broker itself, for a bench that restarts it (bench/faults.py).
    kafka: LocalKafka | None = None


@contextlib.contextmanager
def bench_broker(settings: Settings) -> Iterator[BenchBroker]:
    """A fresh local broker with Clarion's topics and the passthrough's, removed afterwards."""
    with (
        tempfile.TemporaryDirectory(prefix="clarion-bench-") as tmp,
        LocalKafka(data_dir=Path(tmp) / "kafka", partitions=PARTITIONS) as kafka,
    ):
        bench_settings = dataclasses.replace(
            settings,
            broker=f"kafka://{kafka.bootstrap}",
            partitions=PARTITIONS,
            topic_prefix=PREFIX,
            app_id=APP_ID,
        )
        asyncio.run(
            ensure_topics(
                kafka.bootstrap,
                [
                    *topic_specs(bench_settings),
                    TopicSpec(name=PASSTHROUGH_IN, partitions=PARTITIONS),
                    TopicSpec(name=PASSTHROUGH_OUT, partitions=PARTITIONS),
                ],
            )
        )
        yield BenchBroker(
            bootstrap=kafka.bootstrap,
            settings=bench_settings,
            topics=TopicNames(prefix=PREFIX),
            workdir=Path(tmp),
            kafka=kafka,
        )


def baseline(broker: BenchBroker, messages: Sequence[tuple[bytes, bytes]]) -> float:
    asyncio.run(publish(broker.bootstrap, PASSTHROUGH_IN, messages))
    rate = asyncio.run(
        passthrough(broker.bootstrap, PASSTHROUGH_IN, PASSTHROUGH_OUT, len(messages))
    )
    print(f"passthrough (aiokafka consume -> orjson -> produce): {rate:,.0f} events/s", flush=True)
    return rate


def batched_baseline(broker: BenchBroker, total: int) -> float:
    """The passthrough again on the events :func:`baseline` published, with the batch API."""
    rate = asyncio.run(
        batched_passthrough(broker.bootstrap, PASSTHROUGH_IN, PASSTHROUGH_OUT, total)
    )
    print(
        "passthrough, aiokafka batch API (getmany -> orjson -> create_batch/send_batch per "
        f"partition, committed once acknowledged): {rate:,.0f} events/s",
        flush=True,
    )
    return rate


def start_worker(
    broker: BenchBroker, name: str = "worker", **extra_env: str
) -> subprocess.Popen[bytes]:
    """A worker whose providers deliver to quiet local sinks (unless ``extra_env`` says else).

    ``name`` keeps the data directory and the log of each worker of a bench apart.
    """
    env = {
        **os.environ,
        **start_dev_sinks_thread(quiet=True, ephemeral=True),
        "CLARION_BROKER": broker.settings.broker,
        "CLARION_PARTITIONS": str(PARTITIONS),
        "CLARION_TOPIC_PREFIX": PREFIX,
        "CLARION_APP_ID": APP_ID,
        "CLARION_DATA_DIR": str(broker.workdir / name),
        "CLARION_WEB_PORT": str(free_port()),
        **extra_env,
    }
    log = (broker.workdir / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        # An interrupted bench must not leave a worker spinning against a dead broker.
        preexec_fn=die_with_parent,  # noqa: PLW1509
    )


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(60)
    except subprocess.TimeoutExpired:
        print(f"worker {worker.pid} ignored SIGTERM for 60 s; killing it", flush=True)
        worker.kill()
        worker.wait()


def worker_log(broker: BenchBroker, name: str = "worker") -> str:
    return (broker.workdir / f"{name}.log").read_text(errors="replace")[-4000:]


def peak_rss_mib(pid: int) -> float:
    """The process's high-water resident set size (Linux), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def publish(
    bootstrap: str, topic: str, messages: Sequence[tuple[bytes, bytes | None]]
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        pending = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def passthrough(bootstrap: str, source: str, sink: str, total: int) -> float:
    """Consume, decode, re-encode and produce every event; return events per second."""
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id="bench-passthrough",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024
    )
    await consumer.start()
    await producer.start()
    seen = 0
    started = 0.0
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            if batches and not started:
                started = time.perf_counter()
            for tp, messages in batches.items():
                for message in messages:
                    value = orjson.loads(message.value)
                    value["routed"] = True
                    await producer.send(
                        sink, orjson.dumps(value), key=message.key, partition=tp.partition
                    )
                seen += len(messages)
            await consumer.commit()
        await producer.flush()
        return total / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


async def batched_passthrough(bootstrap: str, source: str, sink: str, total: int) -> float:
    """:func:`passthrough` on aiokafka's batch API; return events per second.

    Large fetches, one produce batch per partition built directly (no per-record ``send``
    and its accumulator bookkeeping), and offsets committed only once the fetch's batches
    are acknowledged: stronger than the plain passthrough, and at-least-once like Clarion.
    """
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id="bench-passthrough-batch",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=BATCH_BYTES)
    await consumer.start()
    await producer.start()
    seen = 0
    started = 0.0
    try:
        while seen < total:
            fetched = await consumer.getmany(timeout_ms=500, max_records=50_000)
            if fetched and not started:
                started = time.perf_counter()
            acks: list[asyncio.Future[RecordMetadata]] = []
            for tp, messages in fetched.items():
                acks.extend(await _send_in_batches(producer, sink, tp.partition, messages))
                seen += len(messages)
            await asyncio.gather(*acks)
            await consumer.commit()
        return total / (time.perf_counter() - started)
    finally:
        await producer.stop()
        await consumer.stop()


async def _send_in_batches(
    producer: AIOKafkaProducer, topic: str, partition: int, messages: Sequence[ConsumerRecord]
) -> list[asyncio.Future[RecordMetadata]]:
    """Decode, re-encode and send ``messages`` as few full batches to one partition."""
    acks: list[asyncio.Future[RecordMetadata]] = []
    batch = producer.create_batch()
    for message in messages:
        value = orjson.loads(message.value)
        value["routed"] = True
        encoded = orjson.dumps(value)
        if batch.append(key=message.key, value=encoded, timestamp=None) is None:
            acks.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            batch.append(key=message.key, value=encoded, timestamp=None)
    if batch.record_count():
        acks.append(await producer.send_batch(batch, topic, partition=partition))
    return acks


async def wait_until_writable(bootstrap: str, topic: str, *, within: float) -> None:
    """Wait until every partition of a new topic answers a ListOffsets request.

    For a few seconds after the topic is created, the broker already names a leader but
    refuses writes (NotLeaderForPartition), and the producer would retry them noisily.
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        async with asyncio.timeout(within):
            while True:
                try:
                    await consumer.end_offsets(partitions)
                except KafkaTimeoutError:
                    continue  # each attempt already waited request_timeout_ms
                return
    finally:
        await consumer.stop()


async def committed_total(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except GroupCoordinatorNotAvailableError:
        return 0  # the group does not exist yet: the worker is still starting
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


@dataclass(frozen=True, slots=True)
class CommitLog:
    """(time, records committed so far) each time the count moved, from the first commit seen."""

    samples: list[tuple[float, int]]

    @property
    def rate(self) -> float:
        """Records per second from the first commit seen to the last; NaN if all of it was
        committed before the first look (a small wait-only call)."""
        (started, first), (ended, last) = self.samples[0], self.samples[-1]
        return (last - first) / (ended - started) if ended > started else float("nan")

    def quarters(self) -> Quarters:
        return from_samples(self.samples)


async def follow_commits(
    broker: BenchBroker,
    topic: str,
    total: int,
    workers: Sequence[subprocess.Popen[bytes]],
    *,
    group: str | None = None,
    within: float | None = None,
) -> CommitLog:
    """Sample ``group``'s committed offsets of ``topic`` (default: the route runtime's group,
    which commits the events topic) until they add up to ``total``; ``TimeoutError`` if that
    takes longer than ``within`` seconds."""
    group = group or broker.settings.route_group_id
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    samples: list[tuple[float, int]] = []
    try:
        async with asyncio.timeout(within):
            while True:
                for worker in workers:
                    if worker.poll() is not None:
                        raise RuntimeError(f"worker {worker.pid} exited with {worker.returncode}")
                done = await committed_total(admin, group, topic)
                now = time.perf_counter()
                if done and (not samples or done != samples[-1][1]):
                    samples.append((now, done))
                if done >= total:
                    return CommitLog(samples=samples)
                await asyncio.sleep(0.05)  # sampling interval of the measurement
    finally:
        await admin.close()


async def measure_worker(
    broker: BenchBroker, topic: str, total: int, worker: subprocess.Popen[bytes]
) -> float:
    """Events per second from the worker's first committed batch to its last."""
    return (await follow_commits(broker, topic, total, [worker])).rate


def load_preferences(broker: BenchBroker, preferences: Sequence[tuple[bytes, bytes]]) -> None:
    """Publish ``preferences`` and have a routing-only worker apply them, commit and stop.

    Before the measured workers start on a backlog of events: a worker reading both topics
    at once may fetch a user's events before the preferences published earlier (Kafka
    orders records within a partition, not across topics), and route them for a user it
    does not know yet: no address, so in-app only, no email. The measured workers recover
    the preferences from their changelog before they read any event.
    """
    asyncio.run(publish(broker.bootstrap, broker.topics.preferences, preferences))
    worker = start_worker(broker, "preferences", CLARION_ROLES="route")
    try:
        asyncio.run(
            follow_commits(
                broker, broker.topics.preferences, len(preferences), [worker], within=STARTUP_S
            )
        )
    except (RuntimeError, TimeoutError):
        print(worker_log(broker, "preferences"))
        raise
    finally:
        stop_worker(worker)
