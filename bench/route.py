"""``clarion bench route``: Clarion's ingest+routing against a plain aiokafka passthrough.

Both run in one process tree against one fresh local broker, on the same pre-loaded
events (about 300 bytes of JSON each, keyed by user, 8 partitions), so the ratio is fair.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from pipeline.app import topic_specs
from pipeline.kafka.admin import TopicSpec, ensure_topics
from pipeline.kafka.local import LocalKafka, free_port
from pipeline.settings import Settings
from pipeline.topics import TopicNames

CATEGORIES = ("billing", "security", "social", "product")


def make_event(n: int, users: int, rng: random.Random) -> tuple[bytes, bytes]:
    user = f"user-{rng.randrange(users)}"
    value = {
        "event_id": f"evt-{n:09d}",
        "user_id": user,
        "category": rng.choice(CATEGORIES),
        "priority": rng.choice(("high", "normal", "critical")),
        "title": "Your weekly account summary is ready",
        "body": "Hello! Three new invoices were issued and one payment is pending review.",
        "created_at": "2026-11-23T10:00:00+00:00",
        "tenant_id": "acme",
    }
    return user.encode(), orjson.dumps(value)


def make_preferences(user: str) -> bytes:
    return orjson.dumps(
        {
            "user_id": user,
            "timezone": "Europe/Berlin",
            "addresses": {"email": f"{user}@example.com"},
            "channels": {
                "email": True,
                "sms": False,
                "push": False,
                "in_app": True,
                "webhook": False,
            },
            "categories": {"social": {"email": False}},
        }
    )


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


async def committed_total(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    except GroupCoordinatorNotAvailableError:
        return 0  # the group does not exist yet: the worker is still starting
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


async def measure_worker(
    bootstrap: str, group: str, topic: str, total: int, worker: subprocess.Popen[bytes]
) -> float:
    """Events per second from the worker's first committed batch to its last."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        first_seen = 0
        started = 0.0
        while True:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            done = await committed_total(admin, group, topic)
            now = time.perf_counter()
            if done and not started:
                started, first_seen = now, done
            if done >= total:
                return (done - first_seen) / (now - started)
            await asyncio.sleep(0.05)  # sampling interval of the measurement
    finally:
        await admin.close()


def run_route_bench(settings: Settings, *, events: int, users: int) -> None:
    rng = random.Random(7)
    partitions = 8
    with (
        tempfile.TemporaryDirectory(prefix="clarion-bench-") as tmp,
        LocalKafka(data_dir=Path(tmp) / "kafka", partitions=partitions) as kafka,
    ):
        bootstrap = kafka.bootstrap
        bench_settings = dataclasses.replace(
            settings,
            broker=f"kafka://{bootstrap}",
            partitions=partitions,
            topic_prefix="bench.",
            app_id="bench-clarion",
        )
        topics = TopicNames(prefix="bench.")
        asyncio.run(
            ensure_topics(
                bootstrap,
                [
                    *topic_specs(bench_settings),
                    TopicSpec(name="bench.passthrough.in", partitions=partitions),
                    TopicSpec(name="bench.passthrough.out", partitions=partitions),
                ],
            )
        )
        print(f"generating {events:,} events for {users:,} users ...", flush=True)
        messages = [make_event(n, users, rng) for n in range(events)]
        size = sum(len(v) for _, v in messages) / len(messages)
        asyncio.run(publish(bootstrap, "bench.passthrough.in", messages))
        baseline = asyncio.run(
            passthrough(bootstrap, "bench.passthrough.in", "bench.passthrough.out", events)
        )
        print(
            f"passthrough (aiokafka consume -> orjson -> produce): {baseline:,.0f} events/s",
            flush=True,
        )

        asyncio.run(
            publish(
                bootstrap,
                topics.preferences,
                [(f"user-{u}".encode(), make_preferences(f"user-{u}")) for u in range(users)],
            )
        )
        asyncio.run(publish(bootstrap, topics.events, messages))
        env = {
            **os.environ,
            "CLARION_BROKER": bench_settings.broker,
            "CLARION_PARTITIONS": str(partitions),
            "CLARION_TOPIC_PREFIX": "bench.",
            "CLARION_APP_ID": "bench-clarion",
            "CLARION_DATA_DIR": str(Path(tmp) / "worker"),
            "CLARION_WEB_PORT": str(free_port()),
        }
        log = (Path(tmp) / "worker.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            rate = asyncio.run(
                measure_worker(bootstrap, "bench-clarion", topics.events, events, worker)
            )
        except RuntimeError:
            print((Path(tmp) / "worker.log").read_text(errors="replace")[-4000:])
            raise
        finally:
            worker.terminate()
            worker.wait(60)
        print(
            f"clarion ingest+route (one worker, events -> channel topics): {rate:,.0f} events/s",
            flush=True,
        )
        print(
            f"ratio: {rate / baseline:.1%} of the passthrough ({events:,} events of "
            f"~{size:.0f} bytes, {users:,} users, {partitions} partitions)"
        )
