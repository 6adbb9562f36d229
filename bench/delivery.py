"""``clarion bench delivery``: webhook deliveries through one worker to a local receiver.

Delivery records (every field of ``schemas.records.Delivery``, channel ``webhook``, keyed by
user) are pre-loaded on ``bench.deliver.webhook`` of a fresh local broker; then one worker
delivers them to the dev webhook sink, which verifies every Standard Webhooks signature and
runs in this process on its own event loop and thread. Arrival times are taken by the sink
as requests come in; the bench waits on a condition (with a deadline) for the last one.

Two runs, one worker each, on the same broker and consumer group:

1. rate limit off: deliveries per second from the first request received to the last;
2. ``CLARION_WEBHOOK_RATE=rate`` (burst :data:`BURST`): the rate measured after the initial
   burst, against the configured one.

Between the runs the bench waits until the first worker has committed every offset, so the
second worker starts exactly where the first one stopped.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.harness import (
    PARTITIONS,
    BenchBroker,
    bench_broker,
    follow_commits,
    peak_rss_mib,
    publish,
    start_worker,
    stop_worker,
    wait_until_writable,
    worker_log,
)
from bench.sinks import SinkThread, running
from pipeline.devsinks.recording import RecordedRequest, Recorder
from pipeline.devsinks.run import DevSinks
from pipeline.settings import Settings

USERS = 1000
BURST = 10
# The rate-limited run lasts about this long at the configured rate.
LIMITED_SECONDS = 15.0
# Failure bounds only (a stuck worker), never used to let something happen.
STARTUP_ALLOWANCE = 120.0
SLOWEST_RATE = 50.0


class ArrivalLog:
    """Arrival times of distinct webhook ids; the main thread waits for a count of them."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._seen: set[str] = set()
        self._target = 0
        self.times: list[float] = []
        self.requests = 0

    def add(self, msg_id: str, at: float) -> None:
        """Called on the sink's loop for every request, before it is answered."""
        with self._changed:
            self.requests += 1
            if msg_id in self._seen:
                return
            self._seen.add(msg_id)
            self.times.append(at)
            if len(self.times) >= self._target:
                self._changed.notify_all()

    def reset(self) -> None:
        with self._changed:
            self._seen.clear()
            self.times = []
            self.requests = 0

    def wait_for(
        self, count: int, *, within: float, worker: subprocess.Popen[bytes]
    ) -> list[float]:
        """The first ``count`` arrival times; ``TimeoutError`` or ``RuntimeError`` (the worker
        died) otherwise. Wakes up once a second only to notice a dead worker."""
        deadline = time.monotonic() + within
        with self._changed:
            self._target = count
            while len(self.times) < count:
                if worker.poll() is not None:
                    raise RuntimeError(f"the worker exited with {worker.returncode}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{len(self.times):,} of {count:,} deliveries arrived within {within:g}s"
                    )
                self._changed.wait(min(remaining, 1.0))
            return self.times[:count]


class CountingRecorder(Recorder[RecordedRequest]):
    """The webhook sink's request recorder, also reporting every arrival to an ArrivalLog."""

    def __init__(self, log: ArrivalLog) -> None:
        super().__init__()
        self._log = log

    def append(self, item: RecordedRequest) -> None:
        at = time.perf_counter()
        super().append(item)
        self._log.add(item.headers.get("webhook-id", ""), at)


class WebhookSinkThread(SinkThread):
    """The dev sinks, with every webhook arrival also reported to :attr:`arrivals`."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals = ArrivalLog()

    def start(self) -> DevSinks:
        sinks = super().start()
        sinks.webhook.requests = CountingRecorder(self.arrivals)
        return sinks

    def invalid_signatures(self) -> int:
        """Recorded requests whose signature does not verify (the sink answered them 401)."""
        sink = self.sinks.webhook

        async def count() -> int:
            return sum(not sink.is_signed(request) for request in sink.requests.items)

        return self.call(count())

    def forget_requests(self) -> None:
        async def clear() -> None:
            self.sinks.webhook.requests.clear()

        self.call(clear())
        self.arrivals.reset()


def make_delivery(run: str, n: int, url: str, rng: random.Random) -> tuple[bytes, bytes]:
    user = f"user-{rng.randrange(USERS)}"
    value = {
        "notification_id": f"ntf-{run}-{n:08d}",
        "user_id": user,
        "channel": "webhook",
        "address": url,
        "subject": "Your weekly account summary is ready",
        "body": "Hello! Three new invoices were issued and one payment is pending review.",
        "event_ids": [f"evt-{run}-{n:08d}"],
        "priority": rng.choice(("high", "normal")),
        "category": rng.choice(("billing", "security", "product")),
        "created_at": "2026-11-23T10:00:00+00:00",
        "html": None,
        "locale": "en",
        "tenant_id": "acme",
        "attempt": 1,
        "not_before": None,
    }
    return user.encode(), orjson.dumps(value)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    # The command name (field 2) may contain spaces; the fields after it are fixed.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class RunResult:
    times: list[float]
    requests: int
    invalid: int
    startup: float
    worker_cpu: float
    sink_cpu: float
    peak_rss: float

    @property
    def span(self) -> float:
        return self.times[-1] - self.times[0]

    def rate_between(self, first: int, last: int) -> float:
        """Deliveries per second from arrival ``first`` to arrival ``last`` (0-based)."""
        return (last - first) / (self.times[last] - self.times[first])

    def busiest_second(self) -> int:
        """The most arrivals within any one-second span."""
        most, first = 0, 0
        for last, at in enumerate(self.times):
            while at - self.times[first] >= 1.0:
                first += 1
            most = max(most, last - first + 1)
        return most

    def describe(self) -> str:
        duplicates = self.requests - len(self.times)
        return (
            f"{len(self.times):,} delivered in {self.span:,.1f} s ({self.requests:,} requests, "
            f"{duplicates:,} repeated, {self.invalid:,} badly signed); first request "
            f"{self.startup:,.1f} s after the worker started; worker CPU {self.worker_cpu:.0%}, "
            f"sink CPU {self.sink_cpu:.0%} of one core while delivering; "
            f"worker peak RSS {self.peak_rss:,.0f} MiB"
        )


def run_worker_on(
    broker: BenchBroker,
    sink: WebhookSinkThread,
    messages: list[tuple[bytes, bytes]],
    *,
    committed: int,
    within: float,
    env: dict[str, str],
) -> RunResult:
    """Publish ``messages``, deliver them with a fresh worker, wait for its commits, stop it."""
    topic = broker.topics.deliver("webhook")
    sink.forget_requests()
    asyncio.run(publish(broker.bootstrap, topic, messages))
    worker = start_worker(broker, **sink.sinks.provider_env(), **env)
    started = time.perf_counter()
    try:
        first = sink.arrivals.wait_for(1, within=STARTUP_ALLOWANCE, worker=worker)[0]
        worker_cpu_first = cpu_seconds(worker.pid)
        sink_cpu_first = sink.cpu_seconds()
        times = sink.arrivals.wait_for(len(messages), within=within, worker=worker)
        span = times[-1] - first
        worker_cpu = (cpu_seconds(worker.pid) - worker_cpu_first) / span
        sink_cpu = (sink.cpu_seconds() - sink_cpu_first) / span
        peak = peak_rss_mib(worker.pid)
        # Every offset committed before the next worker of this group starts.
        # Committed by the delivery runtime's group (pipeline/runtime/delivery.py), not the
        # route runtime's, which measure_worker reads.
        delivery_group = f"{broker.settings.group_id}.deliver"
        asyncio.run(
            follow_commits(broker, topic, committed + len(messages), [worker], group=delivery_group)
        )
    except (RuntimeError, TimeoutError):
        print(worker_log(broker))
        raise
    finally:
        stop_worker(worker)
    return RunResult(
        times=times,
        requests=sink.arrivals.requests,
        invalid=sink.invalid_signatures(),
        startup=first - started,
        worker_cpu=worker_cpu,
        sink_cpu=sink_cpu,
        peak_rss=peak,
    )


def run_delivery_bench(settings: Settings, *, deliveries: int, rate: float | None) -> None:
    if deliveries < 2 or (rate is not None and rate <= 0):
        raise ValueError("the bench needs at least 2 deliveries and a positive rate (or None)")
    rng = random.Random(13)
    with bench_broker(settings) as broker, running(WebhookSinkThread()) as sink:
        url = sink.sinks.webhook.hook_url("/bench")
        print(
            f"{deliveries:,} webhook deliveries for {USERS:,} users on {PARTITIONS} partitions, "
            f"to {url} (signatures verified) ...",
            flush=True,
        )
        messages = [make_delivery("free", n, url, rng) for n in range(deliveries)]
        asyncio.run(
            wait_until_writable(
                broker.bootstrap, broker.topics.deliver("webhook"), within=STARTUP_ALLOWANCE
            )
        )
        free = run_worker_on(
            broker,
            sink,
            messages,
            committed=0,
            within=deliveries / SLOWEST_RATE + STARTUP_ALLOWANCE,
            env={},
        )
        unlimited = free.rate_between(0, len(free.times) - 1)
        print(
            f"clarion webhook delivery, rate limit off (one worker): {unlimited:,.0f} deliveries/s",
            flush=True,
        )
        print(f"  {free.describe()}", flush=True)
        if rate is None:
            return
        limited_count = max(round(rate * LIMITED_SECONDS), 4 * BURST)
        print(
            f"{limited_count:,} more with CLARION_WEBHOOK_RATE={rate:g} "
            f"CLARION_WEBHOOK_BURST={BURST} ...",
            flush=True,
        )
        messages = [make_delivery("paced", n, url, rng) for n in range(limited_count)]
        paced = run_worker_on(
            broker,
            sink,
            messages,
            committed=deliveries,
            within=2 * limited_count / rate + STARTUP_ALLOWANCE,
            env={"CLARION_WEBHOOK_RATE": f"{rate:g}", "CLARION_WEBHOOK_BURST": str(BURST)},
        )
        last = len(paced.times) - 1
        steady = paced.rate_between(BURST, last)
        print(
            f"clarion webhook delivery, rate limited: {steady:,.1f} deliveries/s measured "
            f"after the first {BURST} vs {rate:g}/s configured: ratio {steady / rate:.3f}",
            flush=True,
        )
        print(
            f"  including the initial burst: {paced.rate_between(0, last):,.1f} deliveries/s; "
            f"busiest second: {paced.busiest_second():,} arrivals (the bucket hands out at "
            f"most {rate:g} + {BURST} tokens a second; arrivals may bunch by a few)",
            flush=True,
        )
        print(f"  {paced.describe()}", flush=True)
        if unlimited < 1.5 * rate:
            print(
                f"  note: without a limit this worker managed only {unlimited:,.0f}/s here, so "
                "the ratio measures the worker's own speed more than the token bucket",
                flush=True,
            )
