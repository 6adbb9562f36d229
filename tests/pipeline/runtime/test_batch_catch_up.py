"""A worker that starts on a backlog applies the preferences published before its events.

Kafka orders records within a partition, not across topics, and one fetch may hand out the
events' backlog before the preferences'. The runtime reads a newly assigned partition's
preferences up to where they stood at the assignment before its events
(pipeline/runtime/batch.py, ``leading_topics``).
"""

from __future__ import annotations

import asyncio

import pytest

from pipeline.app import topic_specs
from pipeline.kafka.admin import ensure_topics
from pipeline.settings import Settings
from tests.agents.conftest import PARTITIONS, Pipeline
from tests.helpers.kafka import produce_json
from tests.helpers.pipeline_io import event, preferences

pytestmark = pytest.mark.integration

USERS = [f"cold-{n}" for n in range(3000)]
EVENTS = 3000
EMAIL_ONLY = {"email": True, "sms": False, "push": False, "in_app": False, "webhook": False}


async def test_a_cold_start_routes_a_backlog_with_the_preferences_published_before_it(
    pipeline: Pipeline,
) -> None:
    topics = pipeline.topics
    settings = Settings(topic_prefix=pipeline.prefix, partitions=PARTITIONS)
    await ensure_topics(pipeline.bootstrap, topic_specs(settings))
    await produce_json(
        pipeline.bootstrap,
        topics.preferences,
        [preferences(user, channels=EMAIL_ONLY) for user in USERS],
    )
    events = [event(f"cold-{n}", USERS[n % len(USERS)]) for n in range(EVENTS)]
    await produce_json(pipeline.bootstrap, topics.events, events)
    email, in_app = topics.deliver("email"), topics.deliver("in_app")
    async with pipeline.reader(email, in_app) as reader:
        # Small fetches: the backlogs of both topics take many, in whatever order they come.
        await asyncio.to_thread(pipeline.worker(CLARION_COMMIT_BATCH="100").start)
        await reader.wait_for(
            lambda _: len(reader.on(email)) + len(reader.on(in_app)) >= EVENTS,
            deadline_s=180,
            what=f"{EVENTS} deliveries",
        )
        await reader.catch_up()
    # A user the worker did not know yet would have got the default: in-app only.
    unknown = [r.json()["user_id"] for r in reader.on(in_app)]
    assert not unknown, f"{len(unknown)} events routed without their user's preferences"
    emailed = sorted(r.json()["event_ids"][0] for r in reader.on(email))
    assert emailed == sorted(e["event_id"] for e in events)
