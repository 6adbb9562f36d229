"""``clarion bench digest``: mostly low-priority events batched into digests over several windows.

The worker runs on a file clock. Window by window, the bench sets the clock inside the window,
publishes that window's events and waits until the worker has committed them; moving the clock
into the next window makes the sweep close the previous window's digests while the next
window's events come in. Users are assigned round-robin, so with ``events >= users`` every
user has a pending digest at the end of each window: that is when peak RSS is read.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from bench.harness import (
    PARTITIONS,
    BenchBroker,
    baseline,
    bench_broker,
    measure_worker,
    peak_rss_mib,
    publish,
    start_worker,
    worker_log,
)
from pipeline.settings import Settings

FIRST_WINDOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
WINDOW = timedelta(hours=1)
LOW_SHARE = 0.9
DIGEST_MARKER = b'"category":"digest"'


@dataclass(frozen=True, slots=True)
class Workload:
    windows: list[list[tuple[bytes, bytes]]]
    expected_digests: int
    mean_size: float


def make_workload(events: int, users: int, windows: int, rng: random.Random) -> Workload:
    per_window = events // windows
    batches: list[list[tuple[bytes, bytes]]] = []
    digests = 0
    for window in range(windows):
        batch: list[tuple[bytes, bytes]] = []
        with_low: set[int] = set()
        for n in range(per_window):
            user = (window * per_window + n) % users
            low = rng.random() < LOW_SHARE
            if low:
                with_low.add(user)
            value = {
                "event_id": f"evt-{window}-{n:09d}",
                "user_id": f"user-{user}",
                "category": rng.choice(("billing", "social", "product")),
                "priority": "low" if low else "normal",
                "title": "Someone commented on your post",
                "body": "Hello! There is news about your account that you may want to read.",
                "created_at": "2026-11-24T09:00:00+00:00",
                "channels": ["in_app"],
            }
            batch.append((f"user-{user}".encode(), orjson.dumps(value)))
        batches.append(batch)
        digests += len(with_low)
    sizes = [len(value) for batch in batches for _, value in batch]
    return Workload(windows=batches, expected_digests=digests, mean_size=sum(sizes) / len(sizes))


class DigestCounter:
    """Counts digest deliveries on the in-app topic as the worker commits them."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.count = 0
        self.last_at = 0.0
        self._consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            isolation_level="read_committed",
        )

    async def run(self, until: int, deadline_s: float) -> None:
        await self._consumer.start()
        deadline = time.monotonic() + deadline_s
        try:
            while self.count < until and time.monotonic() < deadline:
                batches = await self._consumer.getmany(timeout_ms=500, max_records=10_000)
                found = sum(
                    DIGEST_MARKER in (m.value or b"") for ms in batches.values() for m in ms
                )
                if found:
                    self.count += found
                    self.last_at = time.perf_counter()
        finally:
            await self._consumer.stop()


def set_clock(path: Path, moment: datetime) -> None:
    scratch = path.with_suffix(".tmp")
    scratch.write_text(moment.isoformat())
    scratch.replace(path)


def run_digest_bench(settings: Settings, *, events: int, users: int, windows: int) -> None:
    rng = random.Random(11)
    print(f"generating {events:,} events for {users:,} users over {windows} windows ...")
    workload = make_workload(events, users, windows, rng)
    total = sum(len(batch) for batch in workload.windows)
    with bench_broker(settings) as broker:
        rate_baseline = baseline(broker, [m for batch in workload.windows for m in batch])
        clock = broker.workdir / "clock"
        set_clock(clock, FIRST_WINDOW + timedelta(seconds=1))
        worker = start_worker(broker, CLARION_CLOCK_FILE=str(clock), CLARION_SWEEP_INTERVAL="0.5")
        try:
            asyncio.run(
                _drive(
                    broker=broker,
                    workload=workload,
                    clock=clock,
                    pid=worker.pid,
                    total=total,
                    rate_baseline=rate_baseline,
                    worker=worker,
                )
            )
        except RuntimeError:
            print(worker_log(broker))
            raise
        finally:
            worker.terminate()
            worker.wait(60)


async def _drive(
    *,
    broker: BenchBroker,
    workload: Workload,
    clock: Path,
    pid: int,
    total: int,
    rate_baseline: float,
    worker: subprocess.Popen[bytes],
) -> None:
    topics = broker.topics
    counter = DigestCounter(broker.bootstrap, topics.deliver("in_app"))
    counting = asyncio.create_task(counter.run(workload.expected_digests, deadline_s=3600))
    ingest_seconds = 0.0
    done = 0
    for window, batch in enumerate(workload.windows):
        set_clock(clock, FIRST_WINDOW + window * WINDOW + timedelta(seconds=1))
        started = time.perf_counter()
        await publish(broker.bootstrap, topics.events, batch)
        done += len(batch)
        await measure_worker(broker, topics.events, done, worker)
        ingest_seconds += time.perf_counter() - started
        print(
            f"window {window + 1}: {len(batch):,} events in; worker peak RSS so far "
            f"{peak_rss_mib(pid):,.0f} MiB",
            flush=True,
        )
    closed_at = time.perf_counter()
    set_clock(clock, FIRST_WINDOW + len(workload.windows) * WINDOW + timedelta(seconds=1))
    await counting
    rate = total / ingest_seconds
    print(
        f"clarion digest scenario: {rate:,.0f} events/s in ({total:,} events, {LOW_SHARE:.0%} low)"
    )
    print(
        f"digests emitted: {counter.count:,} of {workload.expected_digests:,} expected; "
        f"the last window's closed {counter.last_at - closed_at:,.1f} s after it ended"
    )
    print(
        f"ratio: {rate / rate_baseline:.1%} of the passthrough (~{workload.mean_size:.0f} bytes, "
        f"{PARTITIONS} partitions); worker peak RSS {peak_rss_mib(pid):,.0f} MiB"
    )
