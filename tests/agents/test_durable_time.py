"""Held notifications and digests through a real broker, on a clock the test moves.

Workers read the time from a file (``CLARION_CLOCK_FILE``); the test writes instants into it
and waits on what the pipeline publishes. Statuses carry the worker's clock, so a release
stamped with the instant the test set proves it did not happen before.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agents.release import DIGEST_MAX_EVENTS
from tests.agents.conftest import Pipeline
from tests.helpers.kafka import TopicReader, produce_json
from tests.helpers.pipeline_io import (
    all_topics,
    deliveries,
    event,
    preferences,
    statuses,
    wait_for_preferences,
)
from tests.helpers.worker import WorkerProcess

pytestmark = pytest.mark.integration


class FileClock:
    def __init__(self, path: Path, now: str) -> None:
        self.path = path
        self.set(now)

    def set(self, now: str) -> None:
        # Replaced, not rewritten: the worker must never read a half-written time.
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(now)
        scratch.replace(self.path)

    def env(self) -> dict[str, str]:
        return {"CLARION_CLOCK_FILE": str(self.path), "CLARION_SWEEP_INTERVAL": "0.1"}


def quiet_user(user_id: str, **overrides: Any) -> dict[str, Any]:
    return preferences(
        user_id,
        channels={"email": True, "sms": False, "push": False, "in_app": True, "webhook": False},
        quiet_hours={"start": "22:00", "end": "07:00"},
        **overrides,
    )


def status_of(reader: TopicReader, pipeline: Pipeline, notification_id: str) -> list[str]:
    return [
        s["status"] for s in statuses(reader, pipeline) if s["notification_id"] == notification_id
    ]


def delivered(reader: TopicReader, pipeline: Pipeline, event_id: str) -> list[dict[str, Any]]:
    return [d for d in deliveries(reader, pipeline) if event_id in d["event_ids"]]


async def start_with_preferences(
    pipeline: Pipeline, clock: FileClock, prefs: list[dict[str, Any]], **env: str
) -> WorkerProcess:
    worker = pipeline.worker(**clock.env(), **env).start()
    await produce_json(pipeline.bootstrap, pipeline.topics.preferences, prefs)
    for value in prefs:
        wait_for_preferences(pipeline, value["user_id"])
    return worker


async def test_quiet_hours_hold_across_midnight_and_dst_and_move_with_the_partition(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # 00:00 in Paris on the night clocks spring forward (02:00 -> 03:00): 07:00 is 05:00 UTC.
    clock = FileClock(tmp_path / "now", "2026-03-28T23:00:00Z")
    first = await start_with_preferences(pipeline, clock, [quiet_user("qh")])
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [event("n1", "qh", priority="normal"), event("c1", "qh", priority="critical")],
    )
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: (
                "deferred" in status_of(reader, pipeline, "n1")
                and len(delivered(reader, pipeline, "c1")) == 2
            ),
            what="n1 deferred and c1 sent through quiet hours",
        )
        assert delivered(reader, pipeline, "n1") == []

        # The partition moves to a worker with no local state: the timers go with it.
        first.stop()
        pipeline.worker(**clock.env()).start()
        clock.set("2026-03-29T04:59:59Z")
        await produce_json(
            pipeline.bootstrap, pipeline.topics.events, [event("c2", "qh", priority="critical")]
        )
        await reader.wait_for(
            lambda _: len(delivered(reader, pipeline, "c2")) == 2, what="the new worker routing"
        )
        clock.set("2026-03-29T05:00:00Z")
        await reader.wait_for(
            lambda _: len(delivered(reader, pipeline, "n1")) == 2, what="n1 released"
        )
        await produce_json(
            pipeline.bootstrap, pipeline.topics.events, [event("c3", "qh", priority="critical")]
        )
        await reader.wait_for(lambda _: len(delivered(reader, pipeline, "c3")) == 2, what="c3")

        released = delivered(reader, pipeline, "n1")
        assert sorted(d["channel"] for d in released) == ["email", "in_app"]
        queued = [
            s
            for s in statuses(reader, pipeline)
            if s["status"] == "queued" and s["event_ids"] == ["n1"]
        ]
        assert len(queued) == 2
        assert {s["at"] for s in queued} == {"2026-03-29T05:00:00.000Z"}


async def test_send_at_waits_and_expiry_while_held_drops(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    clock = FileClock(tmp_path / "now", "2026-11-24T10:00:00Z")
    await start_with_preferences(pipeline, clock, [quiet_user("sa")])
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [
            event("s1", "sa", send_at="2026-11-24T10:30:00Z"),
            event("x1", "sa", send_at="2026-11-24T11:00:00Z", expires_at="2026-11-24T10:45:00Z"),
        ],
    )
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: (
                "deferred" in status_of(reader, pipeline, "s1")
                and "deferred" in status_of(reader, pipeline, "x1")
            ),
            what="both held",
        )
        clock.set("2026-11-24T10:30:00Z")
        await reader.wait_for(lambda _: len(delivered(reader, pipeline, "s1")) == 2, what="s1")
        clock.set("2026-11-24T10:45:00Z")
        await reader.wait_for(
            lambda _: "expired" in status_of(reader, pipeline, "x1"), what="x1 expired"
        )
        clock.set("2026-11-24T11:00:00Z")
        await produce_json(
            pipeline.bootstrap, pipeline.topics.events, [event("m1", "sa", priority="critical")]
        )
        await reader.wait_for(lambda _: len(delivered(reader, pipeline, "m1")) == 2, what="m1")
        assert delivered(reader, pipeline, "x1") == []
        assert status_of(reader, pipeline, "x1") == ["accepted", "deferred", "expired"]


async def test_low_events_and_capped_overflow_make_one_digest_per_channel(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    # 10:00 in Paris: the start of an hourly window.
    clock = FileClock(tmp_path / "now", "2026-11-24T09:00:00Z")
    await start_with_preferences(
        pipeline, clock, [quiet_user("dg", caps={"email": 2, "in_app": 2})]
    )
    low = [
        event(f"low-{n}", "dg", priority="low", category=("social", "billing")[n % 2])
        for n in range(150)
    ]
    normal = [event(f"norm-{n}", "dg", priority="normal") for n in range(5)]
    await produce_json(pipeline.bootstrap, pipeline.topics.events, [*low[:75], *normal, *low[75:]])
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: sum(s["status"] == "accepted" for s in statuses(reader, pipeline)) == 155,
            what="all 155 accepted",
        )
        individually = sorted({d["event_ids"][0] for d in deliveries(reader, pipeline)})
        assert individually == ["norm-0", "norm-1"]

        clock.set("2026-11-24T10:00:00Z")
        await reader.wait_for(
            lambda _: (
                len([d for d in deliveries(reader, pipeline) if d["category"] == "digest"]) == 2
            ),
            what="the digests",
        )
        await produce_json(
            pipeline.bootstrap, pipeline.topics.events, [event("m1", "dg", priority="critical")]
        )
        await reader.wait_for(lambda _: len(delivered(reader, pipeline, "m1")) == 2, what="m1")

        digests = [d for d in deliveries(reader, pipeline) if d["category"] == "digest"]
        assert sorted(d["channel"] for d in digests) == ["email", "in_app"]
        expected = [e["event_id"] for e in [*low[:75], *normal[2:], *low[75:]]]
        for digest in digests:
            assert digest["event_ids"] == expected
            assert digest["subject"] == "You have 153 new notifications"
        digested = Counter(
            s["notification_id"] for s in statuses(reader, pipeline) if s["status"] == "digested"
        )
        assert digested == Counter(dict.fromkeys(expected, 2))


async def test_a_digest_survives_sigkills_and_is_sent_exactly_once(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    clock = FileClock(tmp_path / "now", "2026-11-24T09:00:00Z")
    worker = await start_with_preferences(pipeline, clock, [quiet_user("sk")])
    batches = [[event(f"low-{b}-{n}", "sk", priority="low") for n in range(200)] for b in range(3)]
    async with pipeline.reader(*all_topics(pipeline)) as reader:

        def accepted() -> int:
            return sum(s["status"] == "accepted" for s in statuses(reader, pipeline))

        await produce_json(pipeline.bootstrap, pipeline.topics.events, batches[0])
        await reader.wait_for(lambda _: accepted() >= 50, what="part of the first batch")
        worker.kill()
        await produce_json(pipeline.bootstrap, pipeline.topics.events, batches[1])
        worker.start()  # same data directory
        await reader.wait_for(lambda _: accepted() >= 400, what="two batches")
        await produce_json(pipeline.bootstrap, pipeline.topics.events, batches[2])
        await reader.wait_for(lambda _: accepted() >= 600, what="three batches")

        # Killed right as the window closes: before, during or after the release.
        clock.set("2026-11-24T10:00:00Z")
        worker.kill()
        worker.start()
        # 600 events: two digests per channel, of 500 and 100 (agents/release.py).
        await reader.wait_for(
            lambda _: (
                len([d for d in deliveries(reader, pipeline) if d["category"] == "digest"]) >= 4
            ),
            what="the digests",
        )
        await produce_json(
            pipeline.bootstrap, pipeline.topics.events, [event("m1", "sk", priority="critical")]
        )
        await reader.wait_for(lambda _: len(delivered(reader, pipeline, "m1")) == 2, what="m1")
        # m1's statuses are in the transaction of its deliveries, on other partitions: read them.
        await reader.catch_up()

        digests = [d for d in deliveries(reader, pipeline) if d["category"] == "digest"]
        assert Counter(d["channel"] for d in digests) == {"email": 2, "in_app": 2}
        expected = [e["event_id"] for batch in batches for e in batch]
        for channel in ("email", "in_app"):
            parts = [d["event_ids"] for d in digests if d["channel"] == channel]
            assert [len(p) for p in parts] == [DIGEST_MAX_EVENTS, len(expected) - DIGEST_MAX_EVENTS]
            assert [i for p in parts for i in p] == expected
        accepted_ids = Counter(
            s["notification_id"] for s in statuses(reader, pipeline) if s["status"] == "accepted"
        )
        assert set(accepted_ids) == {*expected, "m1"}
        assert max(accepted_ids.values()) == 1
