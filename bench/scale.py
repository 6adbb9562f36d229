"""``clarion bench scale``: routing throughput of two routing-only workers against one.

Two runs on the same events and users, each on a fresh broker of its own (neither inherits
the other's topics, groups or state): one worker, then two workers sharing that broker, all
with ``CLARION_ROLES=route``. In each run the workers start first and the bench waits until
the route runtime's group holds every partition with one member per worker (no rebalance
left to pay inside the measurement); then it publishes the events and measures events/s
from the first commit it sees to the last, as ``clarion bench route`` does. The goal
(issue 11): two workers at least :data:`TARGET` times one, on this 2-core machine.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

from aiokafka.admin import AIOKafkaAdminClient

from bench.harness import (
    PARTITIONS,
    BenchBroker,
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
from bench.workload import all_preferences, make_events
from pipeline.runtime.members import owners_from_description
from pipeline.settings import Settings

TARGET = 1.6
# A failure bound for workers that never form their group, not a wait.
STARTUP_ALLOWANCE_S = 180.0


async def wait_for_members(
    broker: BenchBroker, workers: list[subprocess.Popen[bytes]], *, within: float
) -> float:
    """Until the route group is stable with every partition owned and one owner per worker;
    how long that took."""
    group, topic = broker.settings.route_group_id, broker.topics.events
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    started = time.perf_counter()
    try:
        async with asyncio.timeout(within):
            while True:
                for worker in workers:
                    if worker.poll() is not None:
                        raise RuntimeError(f"worker {worker.pid} exited with {worker.returncode}")
                owners = {}
                for reply in await admin.describe_consumer_groups([group]):
                    for described in reply.to_object()["groups"]:
                        if described["group"] == group and described["state"] == "Stable":
                            owners.update(owners_from_description(described, topic))
                if len(owners) == PARTITIONS and len(set(owners.values())) == len(workers):
                    return time.perf_counter() - started
                await asyncio.sleep(0.1)  # polling interval of the deadline loop
    finally:
        await admin.close()


def route_run(
    broker: BenchBroker, messages: list[tuple[bytes, bytes]], *, users: int, workers: int
) -> float:
    """Events per second of ``workers`` routing-only workers on ``messages``."""
    topics = broker.topics
    load_preferences(broker, all_preferences(users))
    names = [f"worker-{n}" for n in range(workers)]
    processes = [start_worker(broker, name, CLARION_ROLES="route") for name in names]
    try:
        joined = asyncio.run(wait_for_members(broker, processes, within=STARTUP_ALLOWANCE_S))
        print(
            f"  {workers} worker(s) in the route group, every partition owned, after "
            f"{joined:,.1f} s; publishing the events ...",
            flush=True,
        )
        asyncio.run(publish(broker.bootstrap, topics.events, messages))
        commits = asyncio.run(follow_commits(broker, topics.events, len(messages), processes))
    except (RuntimeError, TimeoutError):
        for name in names:
            print(f"--- {name} log (tail) ---\n{worker_log(broker, name)}")
        raise
    finally:
        for process in processes:
            stop_worker(process)
    return commits.rate


def run_scale_bench(settings: Settings, *, events: int, users: int) -> None:
    if events < 1 or users < 1:
        raise ValueError("the bench needs events and users")
    print(f"generating {events:,} events for {users:,} users ...", flush=True)
    messages = make_events(events, users)
    with bench_broker(settings) as broker:
        plain = baseline(broker, messages)
        batch = batched_baseline(broker, len(messages))
        print("one routing-only worker ...", flush=True)
        one = route_run(broker, messages, users=users, workers=1)
    print(f"clarion route, one worker: {one:,.0f} events/s", flush=True)
    with bench_broker(settings) as broker:
        print("two routing-only workers on one broker ...", flush=True)
        two = route_run(broker, messages, users=users, workers=2)
    print(f"clarion route, two workers: {two:,.0f} events/s", flush=True)
    print(
        f"ratio to the passthrough: one worker {one / plain:.1%}, two workers {two / plain:.1%};"
        f" to the batch passthrough: {one / batch:.1%}, {two / batch:.1%}"
    )
    verdict = "met" if two >= TARGET * one else "NOT met"
    print(f"scale-out: two workers {two / one:.2f}x one worker; target {TARGET:g}x: {verdict}")
