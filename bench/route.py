"""``clarion bench route``: Clarion's ingest+routing against a plain aiokafka passthrough.

All run in one process tree against one fresh local broker, on the same pre-loaded
events (about 300 bytes of JSON each, keyed by user, 8 partitions), so the ratios are fair:
to the plain passthrough (per-record ``send``) and to a stronger one on aiokafka's batch API.
"""

from __future__ import annotations

import asyncio
import random

import orjson

from bench.harness import (
    PARTITIONS,
    baseline,
    batched_baseline,
    bench_broker,
    measure_worker,
    publish,
    start_worker,
    worker_log,
)
from pipeline.settings import Settings

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


def run_route_bench(settings: Settings, *, events: int, users: int) -> None:
    rng = random.Random(7)
    with bench_broker(settings) as broker:
        print(f"generating {events:,} events for {users:,} users ...", flush=True)
        messages = [make_event(n, users, rng) for n in range(events)]
        size = sum(len(v) for _, v in messages) / len(messages)
        rate_baseline = baseline(broker, messages)
        rate_batched = batched_baseline(broker, len(messages))
        topics = broker.topics
        asyncio.run(
            publish(
                broker.bootstrap,
                topics.preferences,
                [(f"user-{u}".encode(), make_preferences(f"user-{u}")) for u in range(users)],
            )
        )
        asyncio.run(publish(broker.bootstrap, topics.events, messages))
        # One routing worker: delivery runs elsewhere (its own roles), not behind this one.
        worker = start_worker(broker, CLARION_ROLES="route")
        try:
            rate = asyncio.run(measure_worker(broker, topics.events, events, worker))
        except RuntimeError:
            print(worker_log(broker))
            raise
        finally:
            worker.terminate()
            worker.wait(60)
        print(
            f"clarion ingest+route (one worker, events -> channel topics): {rate:,.0f} events/s",
            flush=True,
        )
        print(
            f"ratio: {rate / rate_baseline:.1%} of the passthrough ({events:,} events of "
            f"~{size:.0f} bytes, {users:,} users, {PARTITIONS} partitions)"
        )
        print(f"ratio to the batch passthrough: {rate / rate_batched:.1%}")
