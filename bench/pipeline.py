"""``clarion bench pipeline``: one worker doing everything, from the first event to the last email.

One worker with every role (routing, email delivery, the in-app inbox and the status
history) on the route bench's events, pre-loaded, and users with email and in-app on (their
preferences applied before, as in the route bench: bench/harness.py, load_preferences). The
SMTP sink runs in this process (bench/mailsink.py) and notes when it accepted each
notification id. The bench measures:

* events/s from the first event in (the earliest record the worker wrote on the status
  topic: its ``accepted`` for the first events it routed) to the last email accepted, and
  the ratio to both passthroughs of the same run;
* what was expected: every Delivery committed on the email topic (a ``read_committed``
  consumer in the bench), and against it the emails missing at the sink and the duplicates
  it received (more than one message for a notification id): both must be 0;
* the first-quarter and last-quarter rates of the emails accepted.

It never waits a fixed time: it stops when every committed email was accepted, or when nothing
moved for :data:`STALL_S`; then it prints the groups' offsets and the worker's stacks besides
its figures (the emails missing among them), and fails.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.committed import CommittedEmails, first_record_at, high_watermarks, read_to
from bench.harness import (
    PARTITIONS,
    BenchBroker,
    baseline,
    batched_baseline,
    bench_broker,
    committed_total,
    load_preferences,
    publish,
    start_worker,
    stop_worker,
    worker_log,
)
from bench.mailsink import MailSinkThread, Snapshot
from bench.progress import from_arrivals, quarters_line
from bench.sinks import running
from bench.stall import group_offsets, py_spy_dump
from bench.workload import all_preferences, make_events, mean_size
from pipeline.settings import Settings

# A failure bound, never waited out on success: this long without a commit, a committed
# Delivery or an email accepted means the worker is stuck.
STALL_S = 60.0
# How often the bench looks at the counters; arrival times are taken as they come.
POLL_S = 0.1


@dataclass
class StallWatch:
    """Notices when a run's counters stopped moving for :data:`STALL_S`."""

    counters: tuple[int, ...] = ()
    moved_at: float = field(default_factory=time.monotonic)

    def stalled(self, counters: tuple[int, ...]) -> bool:
        if counters != self.counters:
            self.counters, self.moved_at = counters, time.monotonic()
        return time.monotonic() - self.moved_at > STALL_S


@dataclass(frozen=True, slots=True)
class Outcome:
    first_in: float  # perf_counter time of the earliest record the worker wrote
    accepted: Snapshot
    expected: set[str]
    committed_records: int
    store_lines: list[str]
    stall: str | None  # why the bench stopped waiting, if not every email was accepted

    @property
    def missing(self) -> int:
        return len(self.expected - self.accepted.first_at.keys())


async def follow(
    broker: BenchBroker, sink: MailSinkThread, worker: subprocess.Popen[bytes], *, events: int
) -> Outcome:
    topics = broker.topics
    email = topics.deliver("email")
    partitions = [TopicPartition(email, p) for p in range(PARTITIONS)]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    await admin.start()
    # Assigned, not subscribed: it reads every partition from the first moment.
    consumer.assign(partitions)
    committed = CommittedEmails()
    watching = asyncio.create_task(committed.watch(consumer))
    stall: str | None = None
    try:
        watch = StallWatch()
        ends: dict[TopicPartition, int] | None = None
        while True:
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited with {worker.returncode}")
            if watching.done():
                watching.result()
                raise RuntimeError("the email topic watcher stopped")
            routed = await committed_total(admin, broker.settings.route_group_id, topics.events)
            if ends is None and routed >= events:
                # Every event routed: what the email topic holds now is all there will be
                # (no retries, no held notifications). Its high watermarks, not the offsets
                # a read_committed consumer sees as the end: the commit markers of the last
                # transactions may still be on their way, and until they are written that
                # end is where the last transaction began.
                ends = await high_watermarks(broker.bootstrap, partitions)
            caught_up = ends is not None and await read_to(consumer, ends)
            if caught_up and sink.accepted_ids >= len(committed.ids):
                break
            if watch.stalled((routed, committed.records, sink.messages)):
                stall = (
                    f"nothing moved for {STALL_S:g} s: {routed:,} of {events:,} events routed, "
                    f"{committed.records:,} email Deliveries committed, {sink.accepted_ids:,} "
                    "emails accepted"
                )
                break
            await asyncio.sleep(POLL_S)
        if not committed.ids:
            raise RuntimeError(f"{routed:,} of {events:,} events routed, no email committed")
        accepted = sink.snapshot()
        store_lines = await group_offsets(
            broker.bootstrap,
            broker.settings.store_group_id,
            [topics.status, topics.deliver("in_app")],
        )
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await consumer.stop()
        await admin.close()
    return Outcome(
        first_in=await first_record_at(broker.bootstrap, topics.status),
        accepted=accepted,
        expected=set(committed.ids),
        committed_records=committed.records,
        store_lines=store_lines,
        stall=stall,
    )


def report(
    outcome: Outcome, *, events: int, users: int, size: float, plain: float, batch: float
) -> None:
    accepted = outcome.accepted
    if accepted.times:
        span = accepted.times[-1] - outcome.first_in
        rate = events / span
        print(
            f"clarion full pipeline (one worker, every role: route, email to the SMTP sink, "
            f"in-app inbox, status history): {rate:,.0f} events/s ({events:,} events in "
            f"{span:,.1f} s from the first event in to the last email accepted; "
            f"{len(accepted.times) / span:,.0f} emails/s)",
            flush=True,
        )
        print(
            f"ratio: {rate / plain:.1%} of the passthrough, {rate / batch:.1%} of the batch "
            f"passthrough (~{size:.0f} bytes, {users:,} users, {PARTITIONS} partitions)"
        )
    rewritten = outcome.committed_records - len(outcome.expected)
    print(
        f"emails: {len(outcome.expected):,} committed on the email topic "
        f"({rewritten:,} written more than once), {len(accepted.times):,} accepted by the "
        f"sink; duplicates received: {accepted.duplicates:,}; missing: {outcome.missing:,}"
    )
    if not accepted.times:
        return
    print(quarters_line("emails accepted", "emails", lambda: from_arrivals(accepted.times)))
    print(
        f"first email accepted {accepted.times[0] - outcome.first_in:,.1f} s after the first "
        "event in"
    )
    print("at the last email, the worker's store runtime (status history, in-app inbox) had:")
    for line in outcome.store_lines:
        print(f"  {line}")


def run_pipeline_bench(settings: Settings, *, events: int, users: int) -> None:
    if events < 1 or users < 1:
        raise ValueError("the bench needs events and users")
    with bench_broker(settings) as broker, running(MailSinkThread()) as sink:
        print(f"generating {events:,} events for {users:,} users ...", flush=True)
        messages = make_events(events, users)
        plain = baseline(broker, messages)
        batch = batched_baseline(broker, len(messages))
        topics = broker.topics
        load_preferences(broker, all_preferences(users))
        asyncio.run(publish(broker.bootstrap, topics.events, messages))
        worker = start_worker(broker, **sink.provider_env())
        try:
            outcome = asyncio.run(follow(broker, sink, worker, events=events))
            if outcome.stall is not None:
                print(f"STALLED: {outcome.stall}", flush=True)
                diagnose(broker, worker)
        except RuntimeError:
            print(worker_log(broker))
            raise
        finally:
            stop_worker(worker)
        report(
            outcome, events=events, users=users, size=mean_size(messages), plain=plain, batch=batch
        )
    if outcome.stall is not None:
        raise RuntimeError(f"the pipeline stalled: {outcome.stall}")


def diagnose(broker: BenchBroker, worker: subprocess.Popen[bytes]) -> None:
    topics = broker.topics
    deliver = f"{broker.settings.group_id}.deliver"
    lines = asyncio.run(group_offsets(broker.bootstrap, deliver, [topics.deliver("email")]))
    lines += asyncio.run(
        group_offsets(broker.bootstrap, broker.settings.route_group_id, [topics.events])
    )
    for line in lines:
        print(line)
    print(f"--- py-spy dump of the worker ---\n{py_spy_dump(worker.pid)}")
    print(f"--- worker log (tail) ---\n{worker_log(broker)}", flush=True)
