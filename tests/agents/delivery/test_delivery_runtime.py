"""Deliveries while workers come and go: nothing sent twice on a clean handover, little on a kill.

Emails are written straight onto the email channel topic, each in its own Kafka transaction
(as the dispatcher writes them: every commit marker leaves a gap in the offsets), at a steady
pace while workers join, stop (SIGTERM) or die (SIGKILL). What is asserted is what reached the
SMTP sink, counted per notification id.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.delivery.providers.smtp import NOTIFICATION_ID_HEADER
from pipeline.devsinks.run import DevSinks
from pipeline.runtime.delivery import COMMIT_INTERVAL
from tests.agents.conftest import PARTITIONS, Pipeline
from tests.helpers.worker import WorkerProcess

pytestmark = pytest.mark.integration

CONCURRENCY = 4
# Emails per second, spread over every partition.
RATE = 20.0
# Each email takes this long to be accepted: about two in flight per worker at any time, so
# a handover that did not wait for them (or a kill) would have something to repeat.
SMTP_DELAY = 0.1
ASSIGNED = re.compile(r"delivery partitions assigned: (\S+)")


@pytest.fixture(autouse=True)
def fresh_sinks(sinks: DevSinks) -> DevSinks:
    sinks.smtp.reset()
    sinks.webhook.reset()
    sinks.smtp.fail_next(10_000, delay=SMTP_DELAY)
    return sinks


@dataclass
class EmailStream:
    """Writes one email delivery per transaction, partitions in turn, until stopped."""

    pipeline: Pipeline
    # notification id -> partition, and each partition's last offset written.
    written: dict[str, int] = field(default_factory=dict)
    last_offsets: dict[int, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def delivery(self, n: int) -> tuple[str, bytes]:
        nid = f"ntf_rt{n:05d}"
        value = {
            "notification_id": nid,
            "user_id": f"rt{n % PARTITIONS}",
            "channel": "email",
            "address": f"rt{n}@example.com",
            "subject": f"Handover {n}",
            "body": "Hi",
            "event_ids": [nid],
            "priority": "normal",
            "category": "billing",
            "created_at": "2026-11-24T10:00:00Z",
        }
        return nid, orjson.dumps(value)

    async def run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.pipeline.bootstrap,
            transactional_id=f"test-stream-{uuid.uuid4().hex}",
        )
        await producer.start()
        try:
            topic = self.pipeline.topics.deliver("email")
            n = 0
            while not self._stop.is_set():
                nid, value = self.delivery(n)
                partition = n % PARTITIONS
                async with producer.transaction():
                    sent = await producer.send_and_wait(
                        topic, value, key=f"rt{partition}".encode(), partition=partition
                    )
                self.written[nid] = partition
                self.last_offsets[partition] = sent.offset
                n += 1
                await asyncio.sleep(1 / RATE)  # the pace of the stream, not a wait
        finally:
            await producer.stop()

    def stop(self) -> None:
        self._stop.set()


@asynccontextmanager
async def streaming(pipeline: Pipeline) -> AsyncIterator[EmailStream]:
    stream = EmailStream(pipeline)
    task = asyncio.create_task(stream.run())
    try:
        yield stream
    finally:
        stream.stop()
        await task


def arrivals(sinks: DevSinks) -> list[tuple[str, float]]:
    return [
        (str(m.message[NOTIFICATION_ID_HEADER]), m.received_at) for m in sinks.smtp.messages.items
    ]


async def wait_until(predicate: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:g}s waiting for {what}")
        await asyncio.sleep(0.05)  # polling interval of the deadline loop


def assignments(worker: WorkerProcess) -> list[set[int]]:
    """Every email partition set the worker's delivery consumer was given, in order."""
    return [
        {
            int(name.rsplit(":", 1)[1])
            for name in names.split(",")
            if name != "none" and name.rsplit(":", 1)[0].endswith(".deliver.email")
        }
        for names in ASSIGNED.findall(worker.log(tail=10_000_000))
    ]


async def wait_for_split(a: WorkerProcess, b: WorkerProcess) -> set[int]:
    """Both workers deliver email, from disjoint partitions; A's partitions."""

    def split() -> bool:
        got_a, got_b = assignments(a), assignments(b)
        return bool(got_a and got_b and got_a[-1] and got_b[-1] and not got_a[-1] & got_b[-1])

    await wait_until(split, within=45, what="the email partitions shared by both workers")
    return assignments(a)[-1]


async def wait_for_everything(pipeline: Pipeline, sinks: DevSinks, stream: EmailStream) -> None:
    """Every email reached the sink, and the group committed past the last one written:
    after this, nothing more will be sent (a repeat would have to come before the commit)."""
    await wait_until(
        lambda: set(stream.written) <= {nid for nid, _ in arrivals(sinks)},
        within=45,
        what=f"all {len(stream.written)} emails at the sink",
    )
    topic = pipeline.topics.deliver("email")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=pipeline.bootstrap,
        group_id=f"{pipeline.prefix}{pipeline.app_id}.deliver",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:

        async def behind() -> list[int]:
            late = []
            for partition, offset in stream.last_offsets.items():
                committed = await consumer.committed(TopicPartition(topic, partition))
                if committed is None or committed <= offset:
                    late.append(partition)
            return late

        deadline = time.monotonic() + 30
        while late := await behind():
            assert time.monotonic() < deadline, f"offsets of {late} never committed"
            await asyncio.sleep(0.1)  # polling interval of the deadline loop
    finally:
        await consumer.stop()


def worker(pipeline: Pipeline, sinks: DevSinks) -> WorkerProcess:
    return pipeline.worker(**sinks.provider_env(), CLARION_DELIVERY_CONCURRENCY=str(CONCURRENCY))


async def test_a_graceful_handover_sends_no_email_twice(
    pipeline: Pipeline, sinks: DevSinks
) -> None:
    a, b = worker(pipeline, sinks), worker(pipeline, sinks)
    await asyncio.to_thread(a.start)
    async with streaming(pipeline) as stream:
        await sinks.smtp.messages.wait_for(40, within=45)
        await asyncio.to_thread(b.start)
        held_by_a = await wait_for_split(a, b)
        assert held_by_a, "worker A delivered nothing after B joined"
        count = len(sinks.smtp.messages)
        await sinks.smtp.messages.wait_for(count + 40, within=30)
        # SIGTERM while the stream goes on: A finishes what it started, commits, leaves.
        await asyncio.to_thread(a.stop)
        assert a.process is not None
        assert a.process.returncode == 0, a.log()
        # It committed and left its group (rather than being cut off by the process ending).
        assert "delivery runtime stopped" in a.log(tail=10_000_000), a.log()[-5000:]
        count = len(sinks.smtp.messages)
        await sinks.smtp.messages.wait_for(count + 40, within=30)
    await wait_for_everything(pipeline, sinks, stream)

    counts = Counter(nid for nid, _ in arrivals(sinks))
    twice = {nid: n for nid, n in counts.items() if n != 1}
    print(f"graceful handover: {len(stream.written)} emails, {len(twice)} sent more than once")
    assert twice == {}
    assert set(counts) == set(stream.written)


async def test_a_killed_workers_partitions_deliver_again_within_seconds(
    pipeline: Pipeline, sinks: DevSinks
) -> None:
    a, b = worker(pipeline, sinks), worker(pipeline, sinks)
    await asyncio.to_thread(a.start)
    await asyncio.to_thread(b.start)
    async with streaming(pipeline) as stream:
        held_by_a = await wait_for_split(a, b)
        count = len(sinks.smtp.messages)
        await sinks.smtp.messages.wait_for(count + 40, within=30)
        killed_at = time.time()
        await asyncio.to_thread(a.kill)

        def resumed() -> dict[int, float]:
            first: dict[int, float] = {}
            for nid, at in arrivals(sinks):
                partition = stream.written.get(nid)
                # An email A had handed over before it died may still be accepted after.
                late = at > killed_at + 10 * SMTP_DELAY
                if late and partition in held_by_a and partition not in first:
                    first[partition] = at - killed_at
            return first

        await wait_until(
            lambda: set(resumed()) == held_by_a, within=40, what="A's partitions delivering again"
        )
        count = len(sinks.smtp.messages)
        await sinks.smtp.messages.wait_for(count + 20, within=30)
    await wait_for_everything(pipeline, sinks, stream)

    after = resumed()
    print(
        f"after SIGKILL, A's partitions {sorted(held_by_a)} delivered again after "
        + ", ".join(f"{p}: {s:.1f} s" for p, s in sorted(after.items()))
    )
    # The group gives A's partitions away after its session (10 s) and B's next heartbeat.
    assert min(after.values()) < 15.0
    # B drains one partition's fetched backlog before the next one's: a little later.
    assert max(after.values()) < 20.0

    counts = Counter(nid for nid, _ in arrivals(sinks))
    assert set(counts) == set(stream.written)
    repeats = {nid: n - 1 for nid, n in counts.items() if n > 1}
    print(f"after SIGKILL: {sum(repeats.values())} repeats of {len(counts)} emails: {repeats}")
    # B's own partitions were handed over cleanly (to itself) in the rebalance.
    assert all(stream.written[nid] in held_by_a for nid in repeats)
    # A repeats what it had in flight, and what finished since its last commit.
    bound = CONCURRENCY + math.ceil(RATE * len(held_by_a) / PARTITIONS * COMMIT_INTERVAL) + 1
    assert sum(repeats.values()) <= bound


async def test_a_broken_delivery_loop_crashes_the_worker(
    pipeline: Pipeline, sinks: DevSinks
) -> None:
    # Under the broker's group.min.session.timeout.ms (6 s): the group refuses the consumer.
    broken = pipeline.worker(**sinks.provider_env(), CLARION_RUNTIME_SESSION_TIMEOUT="1")
    with contextlib.suppress(AssertionError):  # it may die before it is ever healthy
        await asyncio.to_thread(broken.start)
    assert broken.process is not None
    process = broken.process
    await wait_until(lambda: process.poll() is not None, within=60, what="the worker to exit")
    log = broken.log(tail=200_000)
    # The route runtime's consumer is refused the same way; whichever tries first crashes it.
    assert re.search(r"(delivery|route) runtime crashed", log)
    assert process.returncode != 0, log[-3000:]


async def test_an_undecodable_delivery_becomes_an_invalid_record_and_the_next_is_sent(
    pipeline: Pipeline, sinks: DevSinks
) -> None:
    solo = await asyncio.to_thread(worker(pipeline, sinks).start)
    topic = pipeline.topics.deliver("email")
    nid, value = EmailStream(pipeline).delivery(1)
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.bootstrap, transactional_id=f"test-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            bad = await producer.send_and_wait(topic, b"{not json", key=b"rt1", partition=1)
            await producer.send_and_wait(topic, value, key=b"rt1", partition=1)
    finally:
        await producer.stop()

    await sinks.smtp.messages.wait_for(1, within=45)
    async with pipeline.reader(pipeline.topics.invalid) as reader:
        records = await reader.wait_for(bool, deadline_s=30, what="the invalid record")
    invalid = records[0].json()
    assert (invalid["topic"], invalid["partition"], invalid["offset"]) == (topic, 1, bad.offset)
    assert invalid["raw"] == "{not json"
    assert "could not deliver" in invalid["error"]
    assert [found for found, _ in arrivals(sinks)] == [nid]
    assert solo.process is not None
    assert solo.process.poll() is None, "the worker died of an undecodable delivery"


async def test_a_backlog_on_one_partition_does_not_hold_up_another_channel(
    pipeline: Pipeline, sinks: DevSinks
) -> None:
    # Ten emails at once, then five a second: the backlog takes about 20 s to send.
    solo = worker(pipeline, sinks)
    solo.extra_env["CLARION_SMTP_RATE"] = "5"
    await asyncio.to_thread(solo.start)
    stream = EmailStream(pipeline)
    backlog = [stream.delivery(n) for n in range(100)]
    hook = {
        "notification_id": "ntf_rt_hook",
        "user_id": "rt1",
        "channel": "webhook",
        "address": sinks.webhook.hook_url("/hooks/rt1"),
        "subject": "Hello",
        "body": "Hi",
        "event_ids": ["ntf_rt_hook"],
        "priority": "high",
        "category": "billing",
        "created_at": "2026-11-24T10:00:00Z",
    }
    producer = AIOKafkaProducer(
        bootstrap_servers=pipeline.bootstrap, transactional_id=f"test-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        async with producer.transaction():
            for _, value in backlog:
                await producer.send(pipeline.topics.deliver("email"), value, partition=0)
        await sinks.smtp.messages.wait_for(1, within=45)  # the backlog is being fetched
        async with producer.transaction():
            await producer.send(
                pipeline.topics.deliver("webhook"), orjson.dumps(hook), key=b"rt1", partition=1
            )
    finally:
        await producer.stop()

    await sinks.webhook.requests.wait_for(1, within=5)
    emails_so_far = len(sinks.smtp.messages)
    print(f"the webhook went out after {emails_so_far} of {len(backlog)} backlogged emails")
    assert emails_so_far < len(backlog) / 2
