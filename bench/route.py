"""``clarion bench route``: Clarion's ingest+routing against a plain aiokafka passthrough.

All run in one process tree against one fresh local broker, on the same pre-loaded
events (about 300 bytes of JSON each, keyed by user, 8 partitions), so the ratios are fair:
to the plain passthrough (per-record ``send``) and to a stronger one on aiokafka's batch API.
The first-quarter and last-quarter rates (events committed, by when their commit was seen)
show whether routing slows down as the run goes on.
"""

from __future__ import annotations

import asyncio

from bench.harness import (
    PARTITIONS,
    baseline,
    batched_baseline,
    bench_broker,
    follow_commits,
    load_preferences,
    publish,
    start_worker,
    stop_worker,
    worker_log,
)
from bench.progress import quarters_line
from bench.workload import all_preferences, make_events, mean_size
from pipeline.settings import Settings


def run_route_bench(settings: Settings, *, events: int, users: int) -> None:
    with bench_broker(settings) as broker:
        print(f"generating {events:,} events for {users:,} users ...", flush=True)
        messages = make_events(events, users)
        rate_baseline = baseline(broker, messages)
        rate_batched = batched_baseline(broker, len(messages))
        topics = broker.topics
        load_preferences(broker, all_preferences(users))
        asyncio.run(publish(broker.bootstrap, topics.events, messages))
        # One routing worker: delivery runs elsewhere (its own roles), not behind this one.
        worker = start_worker(broker, CLARION_ROLES="route")
        try:
            commits = asyncio.run(follow_commits(broker, topics.events, events, [worker]))
        except RuntimeError:
            print(worker_log(broker))
            raise
        finally:
            stop_worker(worker)
        rate = commits.rate
        print(
            f"clarion ingest+route (one worker, events -> channel topics): {rate:,.0f} events/s",
            flush=True,
        )
        print(
            f"ratio: {rate / rate_baseline:.1%} of the passthrough ({events:,} events of "
            f"~{mean_size(messages):.0f} bytes, {users:,} users, {PARTITIONS} partitions)"
        )
        print(f"ratio to the batch passthrough: {rate / rate_batched:.1%}")
        print(quarters_line("events committed", "events", commits.quarters), flush=True)
