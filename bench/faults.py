"""``clarion bench faults``: issue 11's operator scenario, measured.

A steady stream of events (20,000 over 75 s by default) to users with email and in-app on,
while workers come and go and the broker restarts (bench/fault_plan.py: A; B joins; A
SIGKILLed; C joins; broker restarted; B SIGKILLed; D joins; C stopped with SIGTERM). Emails
go to an SMTP sink in this process that notes every acceptance (bench/acceptances.py); a
``read_committed`` consumer here notes every Delivery committed on the channel topics
(bench/observed.py). Then it prints what was accepted, delivered, missing and repeated, the
duplicate emails put down to each SIGKILL or not, and how long partitions went without
progress after each change (bench/fault_report.py), against the issue's targets.

Workers run with the settings of the environment (``CLARION_*``), defaults otherwise.
``CLARION_BENCH_KEEP=<folder>`` keeps the logs and what the bench observed there, to look
into a stall or a missing event afterwards (bench/fault_keep.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from bench import fault_keep
from bench.acceptances import AcceptanceSinkThread
from bench.fault_figures import Attempts, every_lane, progress
from bench.fault_plan import FIRST_WORKER, READY_ALLOWANCE_S, Scenario, ServedSince
from bench.fault_report import Observed, report
from bench.harness import (
    PARTITIONS,
    BenchBroker,
    bench_broker,
    committed_total,
    publish,
    wait_until_writable,
)
from bench.observed import DeliveryLog, StatusLog, Stream, preferences, send_stream
from bench.sinks import running
from bench.workers import Worker
from pipeline.settings import Settings

# A failure bound, never waited out when things go well.
PREPARE_ALLOWANCE_S = 180.0
# How long after the last event the bench waits for what is still to come. A bound on the
# run (about 4 minutes in all), so a worker that takes minutes to start leaves deliveries
# "not there yet" rather than making the bench wait for it.
DRAIN_ALLOWANCE_S = 120.0
_POLL_S = 0.5  # polling interval of the deadline loops
KEEP_ENV = "CLARION_BENCH_KEEP"


def run_faults_bench(settings: Settings, *, events: int, users: int, seconds: float) -> None:
    if events < 1 or users < 1 or seconds <= 0:
        raise ValueError("the bench needs events, users and a positive duration")
    # The bench's own clients retry through the broker restart; their errors are expected.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    with bench_broker(settings) as broker, running(AcceptanceSinkThread()) as sink:
        print(
            f"faults: {events:,} events over {seconds:g} s ({events / seconds:,.1f}/s) to "
            f"{users:,} users with email and in-app, {PARTITIONS} partitions; the runtimes' "
            f"session timeout {broker.settings.runtime_session_timeout:g} s ...",
            flush=True,
        )
        scenario, log = _prepare(broker, sink, users, seconds)
        observed: Observed | None = None
        try:
            observed = asyncio.run(_play(scenario, log, sink, events=events, users=users))
        except BaseException:
            for worker in scenario.workers.values():
                print(f"--- {worker.name} (tail of its log) ---\n{worker.log_tail()}")
            raise
        finally:
            for worker in scenario.alive():
                asyncio.run(worker.terminate())
            keep = os.environ.get(KEEP_ENV)
            if keep:
                fault_keep.keep(Path(keep), broker, scenario, observed)
        report(scenario, observed, events=events)


def _prepare(
    broker: BenchBroker, sink: AcceptanceSinkThread, users: int, seconds: float
) -> tuple[Scenario, DeliveryLog]:
    """Preferences published and applied, worker A ready: the stream may start."""
    topics = broker.topics
    for topic in (topics.preferences, topics.events):
        asyncio.run(wait_until_writable(broker.bootstrap, topic, within=PREPARE_ALLOWANCE_S))
    prefs = [(f"user-{u}".encode(), preferences(f"user-{u}")) for u in range(users)]
    asyncio.run(publish(broker.bootstrap, topics.preferences, prefs))
    assert broker.kafka is not None  # bench_broker always gives it
    stream, log = Stream(), DeliveryLog()
    scenario = Scenario(
        broker=broker,
        kafka=broker.kafka,
        worker_env=sink.provider_env(),
        stream=stream,
        seconds=seconds,
        served_since=_served_since(stream, log, sink, topics.deliver("email")),
    )
    started = time.perf_counter()
    first = Worker.start(broker, FIRST_WORKER, scenario.worker_env)
    scenario.workers[first.name] = first
    try:
        ready = asyncio.run(first.wait_ready(READY_ALLOWANCE_S))
        # Before any event: a user's events routed ahead of their preferences would go
        # in-app only (no address yet), and the email counts would not add up.
        asyncio.run(_preferences_applied(broker, users))
    except BaseException:
        print(first.log_tail())
        asyncio.run(first.terminate())
        raise
    print(f"worker {first.name} ready after {ready - started:.1f} s", flush=True)
    return scenario, log


def _served_since(
    stream: Stream, log: DeliveryLog, sink: AcceptanceSinkThread, email_topic: str
) -> ServedSince:
    lanes = every_lane(PARTITIONS)

    async def served_since(since: float) -> bool:
        accepted = await asyncio.to_thread(sink.snapshot)
        seen = progress(log.records, stream.partition_of, accepted, email_topic)
        return all(seen.get(lane, [-math.inf])[-1] >= since for lane in lanes)

    return served_since


async def _preferences_applied(broker: BenchBroker, users: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        group, topic = broker.settings.route_group_id, broker.topics.preferences
        async with asyncio.timeout(PREPARE_ALLOWANCE_S):
            while True:
                if await committed_total(admin, group, topic) >= users:
                    return
                await asyncio.sleep(_POLL_S)
    finally:
        await admin.close()


async def _play(
    scenario: Scenario, log: DeliveryLog, sink: AcceptanceSinkThread, *, events: int, users: int
) -> Observed:
    topics = scenario.broker.topics
    bootstrap = scenario.broker.bootstrap
    statuses = StatusLog()
    reading = asyncio.create_task(
        log.follow(bootstrap, [topics.deliver("email"), topics.deliver("in_app")])
    )
    reading_statuses = asyncio.create_task(statuses.follow(bootstrap, topics.status))
    sending = asyncio.create_task(
        send_stream(
            bootstrap,
            topics.events,
            scenario.stream,
            count=events,
            seconds=scenario.seconds,
            users=users,
        )
    )
    try:
        await scenario.play()
        await sending
        drained_at = await _drained(scenario, log, sink)
        # Before the bench stops the workers left: which ones ended on their own.
        exits = scenario.unexpected_exits()
    finally:
        await scenario.finish()
        tasks = (reading, reading_statuses, sending)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
    return Observed(
        records=log.records,
        accepted=await asyncio.to_thread(sink.snapshot),
        without_id=sink.smtp.without_id,
        attempts=Attempts(sending=statuses.sending, sent=statuses.sent),
        drained_at=drained_at,
        unexpected_exits=exits,
    )


async def _drained(
    scenario: Scenario, log: DeliveryLog, sink: AcceptanceSinkThread
) -> float | None:
    """Wait until every accepted event has its Delivery on both channel topics and every
    email its acceptance; the time that was seen, or None after DRAIN_ALLOWANCE_S."""
    email = scenario.broker.topics.deliver("email")
    expected = set(scenario.stream.partition_of)
    give_up = scenario.stream.ended + DRAIN_ALLOWANCE_S - time.perf_counter()
    try:
        async with asyncio.timeout(max(0.0, give_up)):
            while True:
                accepted = await asyncio.to_thread(sink.snapshot)
                by_topic: dict[str, set[str]] = {}
                emails: set[str] = set()
                for record in log.records:
                    by_topic.setdefault(record.topic, set()).add(record.event_id)
                    if record.topic == email:
                        emails.add(record.notification_id)
                delivered = len(by_topic) == 2 and all(expected <= e for e in by_topic.values())
                if delivered and all(accepted.get(n) for n in emails):
                    return time.perf_counter()
                await asyncio.sleep(_POLL_S)
    except TimeoutError:
        return None
