"""One rule for message keys on both input topics: a key that is not UTF-8 is rejected."""

from __future__ import annotations

import orjson
import pytest

from tests.agents.conftest import Pipeline
from tests.helpers.kafka import produce, produce_json
from tests.helpers.pipeline_io import (
    all_topics,
    deliveries,
    event,
    preferences,
    statuses,
    wait_for_preferences,
)

pytestmark = pytest.mark.integration

BAD_KEY = b"\xffzoe"
# What errors="replace" made of the key before: the value below matched it.
REPLACED = BAD_KEY.decode("utf-8", "replace")


async def test_a_key_that_is_not_utf8_is_rejected_alike_on_events_and_preferences(
    pipeline: Pipeline,
) -> None:
    pipeline.worker().start()
    await produce(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [(BAD_KEY, orjson.dumps(preferences(REPLACED)))],
    )
    await produce(
        pipeline.bootstrap,
        pipeline.topics.events,
        [(BAD_KEY, orjson.dumps(event("k-1", REPLACED)))],
    )
    # A sentinel on each topic, so the bad records are known to have been handled.
    await produce_json(pipeline.bootstrap, pipeline.topics.preferences, [preferences("zoe")])
    wait_for_preferences(pipeline, "zoe")
    await produce_json(pipeline.bootstrap, pipeline.topics.events, [event("k-2", "zoe")])
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: (
                any(d["event_ids"] == ["k-2"] for d in deliveries(reader, pipeline))
                and len(reader.on(pipeline.topics.invalid)) >= 2
            ),
            what="the sentinel delivered and both bad keys rejected",
        )
        await reader.catch_up()
        invalid = {r.json()["topic"]: r for r in reader.on(pipeline.topics.invalid)}
        assert set(invalid) == {pipeline.topics.events, pipeline.topics.preferences}
        errors = {topic: r.json()["error"] for topic, r in invalid.items()}
        assert all("not valid UTF-8" in error for error in errors.values()), errors
        assert len(set(errors.values())) == 1, f"one rule, one reason: {errors}"
        assert all(r.key == BAD_KEY for r in invalid.values())
        rejected = [s for s in statuses(reader, pipeline) if s["status"] == "rejected"]
        assert len(rejected) == 2, rejected
    # Nothing was stored under what the key would have been after replacing its bad bytes.
    assert not any(d["user_id"] == REPLACED for d in deliveries(reader, pipeline))
