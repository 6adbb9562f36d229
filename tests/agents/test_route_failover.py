"""Routing while workers come and go: A and B route a steady stream; A stops gracefully, C
joins, B is SIGKILLed. Every event reaches its channel topic exactly once for read_committed
readers, every digest row is released exactly once, by whoever owns it when it is due, and
B's partitions route again within 15 s of its death. The store runtime goes through the same
changes: each in-app notification is stored, and its ``sent`` status written, exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.agents.conftest import PARTITIONS, Pipeline
from tests.agents.test_durable_time import FileClock
from tests.helpers.kafka import produce_json
from tests.helpers.pipeline_io import IN_APP_ONLY, event, preferences, wait_for_preferences

pytestmark = pytest.mark.integration

USERS = [f"fo-{n}" for n in range(40)]
# Events per second, each to a user in turn, while the workers change.
RATE = 100.0


async def steady_stream(pipeline: Pipeline, sent: list[str], stop: asyncio.Event) -> None:
    """Normal-priority events (delivered at once), ten per tick, until ``stop``."""
    n = 0
    while not stop.is_set():
        batch = [event(f"now-{n + i}", USERS[(n + i) % len(USERS)]) for i in range(10)]
        await produce_json(pipeline.bootstrap, pipeline.topics.events, batch)
        sent.extend(e["event_id"] for e in batch)
        n += len(batch)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 10 / RATE)  # the stream's pace, not a sync


async def test_graceful_stop_kill_and_join_route_every_event_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    clock = FileClock(tmp_path / "now", "2026-11-24T09:00:00Z")
    env = clock.env()
    a = pipeline.worker(**env).start()
    b = pipeline.worker(**env).start()
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [preferences(u, channels=IN_APP_ONLY) for u in USERS],
    )
    for user in USERS:
        wait_for_preferences(pipeline, user)
    # One low event per user: one pending digest row per user, released at 10:00.
    low = [event(f"low-{u}", u, priority="low") for u in USERS]
    await produce_json(pipeline.bootstrap, pipeline.topics.events, low)

    deliver, status = pipeline.topics.deliver("in_app"), pipeline.topics.status
    sent: list[str] = []
    stop = asyncio.Event()
    async with pipeline.reader(deliver, status) as reader:

        def routed() -> int:
            return len(reader.on(deliver))

        stream = asyncio.create_task(steady_stream(pipeline, sent, stop))
        try:
            await reader.wait_for(lambda _: routed() >= 300, what="routing by A and B")
            a.stop()  # SIGTERM: commits what it holds and leaves the group
            c = pipeline.worker(**env).start()
            seen = routed()
            await reader.wait_for(lambda _: routed() >= seen + 300, what="routing by B and C")
            b.kill()
            killed_at, after_kill = time.monotonic(), len(sent)

            def partitions_routing_again() -> set[int]:
                late = set(sent[after_kill:])
                return {r.partition for r in reader.on(deliver) if r.json()["event_ids"][0] in late}

            # Within 15 s of the kill, every partition routes again: B's too, taken over by C.
            await reader.wait_for(
                lambda _: len(partitions_routing_again()) == PARTITIONS,
                deadline_s=15,
                what="every partition routing again after the SIGKILL",
            )
            resumed = time.monotonic() - killed_at
            print(f"every partition routed again {resumed:.1f} s after B's SIGKILL")
            seen = routed()
            await reader.wait_for(lambda _: routed() >= seen + 300, what="routing by C alone")
        finally:
            stop.set()
            await stream
        clock.set("2026-11-24T10:00:01Z")
        expected = len(sent) + len(USERS)  # every event, and one digest per user
        await reader.wait_for(
            lambda _: routed() >= expected, deadline_s=90, what=f"{expected} deliveries"
        )
        await reader.catch_up()

        deliveries = [r.json() for r in reader.on(deliver)]
        digests = Counter(d["user_id"] for d in deliveries if d["category"] == "digest")
        assert digests == Counter(USERS), "each user's digest released exactly once"
        assert all(
            d["event_ids"] == [f"low-{d['user_id']}"]
            for d in deliveries
            if d["category"] == "digest"
        )
        immediate = Counter(d["event_ids"][0] for d in deliveries if d["category"] != "digest")
        assert set(immediate) == set(sent), sorted(set(sent) - set(immediate))[:10]
        repeated = [event_id for event_id, count in immediate.items() if count > 1]
        assert not repeated, f"{len(repeated)} events routed twice: {repeated[:10]}"

        stored = {d["notification_id"] for d in deliveries}

        def sent_statuses() -> Counter[str]:
            changes = (r.json() for r in reader.on(status))
            return Counter(c["notification_id"] for c in changes if c["status"] == "sent")

        await reader.wait_for(
            lambda _: set(sent_statuses()) >= stored, deadline_s=60, what="every item stored"
        )
        await reader.catch_up()
        twice = {nid: n for nid, n in sent_statuses().items() if n > 1}
        assert not twice, f"{len(twice)} in-app notifications stored twice: {list(twice)[:10]}"
    c.stop()
