"""The ingest+route agent through a real broker and a real worker process."""

from __future__ import annotations

import base64
import hashlib
from collections import Counter

import orjson
import pytest

from tests.agents.conftest import Pipeline
from tests.helpers.kafka import Received, produce, produce_json
from tests.helpers.pipeline_io import (
    all_topics,
    deliveries,
    event,
    preferences,
    statuses,
    wait_for_no_preferences,
    wait_for_preferences,
)

pytestmark = pytest.mark.integration


async def test_event_reaches_the_right_channel_topics_with_rendered_content(
    pipeline: Pipeline,
) -> None:
    pipeline.worker().start()
    await produce_json(pipeline.bootstrap, pipeline.topics.preferences, [preferences("alice")])
    wait_for_preferences(pipeline, "alice")
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [
            event(
                "ev-1",
                "alice",
                template="welcome",
                data={"name": "Alice <script>"},
                title=None,
                body=None,
                channels=["email", "sms", "push"],
            )
        ],
    )
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: any(s["status"] == "suppressed" for s in statuses(reader, pipeline)),
            what="ev-1 routed",
        )
        sent = deliveries(reader, pipeline)
        assert sorted(d["channel"] for d in sent) == ["email", "sms"]
        by_channel = {d["channel"]: d for d in sent}
        email = by_channel["email"]
        assert email["_topic"] == pipeline.topics.deliver("email")
        assert email["_key"] == b"alice"
        assert email["address"] == "alice@example.com"
        assert email["event_ids"] == ["ev-1"]
        assert "Alice" in email["subject"] + email["body"]
        assert "&lt;script&gt;" in email["html"]
        assert by_channel["sms"]["address"] == "+33612345678"
        assert email["notification_id"] != by_channel["sms"]["notification_id"]
        seen = Counter((s["notification_id"], s["status"]) for s in statuses(reader, pipeline))
        assert seen[("ev-1", "accepted")] == 1
        assert seen[(email["notification_id"], "queued")] == 1
        push = [s for s in statuses(reader, pipeline) if s["channel"] == "push"]
        assert [p["status"] for p in push] == ["suppressed"]
        assert "disabled" in push[0]["reason"]


async def test_opted_out_category_is_suppressed(pipeline: Pipeline) -> None:
    pipeline.worker().start()
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [
            preferences(
                "bob",
                channels={
                    "email": True,
                    "sms": True,
                    "push": False,
                    "in_app": False,
                    "webhook": False,
                },
            )
        ],
    )
    wait_for_preferences(pipeline, "bob")
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [event("promo-1", "bob", category="marketing"), event("bill-1", "bob")],
    )
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: (
                any(d["event_ids"] == ["bill-1"] for d in deliveries(reader, pipeline))
                and any(
                    s["notification_id"] == "promo-1" and s["status"] == "suppressed"
                    for s in statuses(reader, pipeline)
                )
            ),
            what="both events routed",
        )
        assert all(d["event_ids"] == ["bill-1"] for d in deliveries(reader, pipeline))
        promo = [s for s in statuses(reader, pipeline) if s["notification_id"] == "promo-1"]
        assert [s["status"] for s in promo] == ["accepted", "suppressed"]
        assert "marketing" in promo[1]["reason"]


async def test_duplicate_event_id_and_dedupe_key_produce_one_delivery(pipeline: Pipeline) -> None:
    pipeline.worker().start()
    channels = {"email": False, "sms": False, "push": False, "in_app": True, "webhook": False}
    await produce_json(
        pipeline.bootstrap, pipeline.topics.preferences, [preferences("carol", channels=channels)]
    )
    wait_for_preferences(pipeline, "carol")
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [
            event("dup-1", "carol"),
            event("dup-1", "carol", title="changed"),
            event("k-1", "carol", dedupe_key="order-7"),
            event("k-2", "carol", dedupe_key="order-7"),
            event("sentinel", "carol"),
        ],
    )
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: (
                any(d["event_ids"] == ["sentinel"] for d in deliveries(reader, pipeline))
                and sum(s["status"] == "duplicate" for s in statuses(reader, pipeline)) >= 2
            ),
            what="the sentinel delivered and two duplicates reported",
        )
        delivered = Counter(d["event_ids"][0] for d in deliveries(reader, pipeline))
        assert delivered == {"dup-1": 1, "k-1": 1, "sentinel": 1}
        dupes = [s for s in statuses(reader, pipeline) if s["status"] == "duplicate"]
        assert sorted(s["notification_id"] for s in dupes) == ["dup-1", "k-2"]
        assert any("dedupe_key 'order-7'" in s["reason"] for s in dupes)


BAD_INPUTS: list[tuple[bytes | None, bytes | None, str]] = [
    (b"dave", b"{not json", "not JSON"),
    (
        b"dave",
        orjson.dumps(
            {"event_id": "x1", "user_id": "dave", "priority": "high", "title": "t", "body": "b"}
        ),
        "category",
    ),
    (b"dave", orjson.dumps(event("x2", "dave", priority="urgent")), "priority"),
    (b"dave", orjson.dumps(event("x3", "dave", channels="email")), "channels"),
    (b"dave", orjson.dumps(event("x4", "dave", send_at="tomorrow")), "send_at"),
    (b"dave", orjson.dumps(event("x5", "dave", body="x" * 70_000)), "limit"),
    (b"dave", b"\xff\xfe\x00garbage", "not JSON"),
    (b"dave", b"[1, 2, 3]", "object"),
    (b"mallory", orjson.dumps(event("x6", "dave")), "keyed by user_id"),
    (
        b"dave",
        orjson.dumps(
            event("x7", "dave", template="no_such_template", title=None, body=None, data={})
        ),
        "no_such_template",
    ),
]


async def test_bad_input_lands_on_the_invalid_topic_and_the_worker_keeps_going(
    pipeline: Pipeline,
) -> None:
    pipeline.worker().start()
    messages = [
        *((k, v) for k, v, _ in BAD_INPUTS),
        (b"dave", orjson.dumps(event("good-1", "dave"))),
    ]
    await produce(pipeline.bootstrap, pipeline.topics.events, messages)
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: (
                any(d["event_ids"] == ["good-1"] for d in deliveries(reader, pipeline))
                and len(reader.on(pipeline.topics.invalid)) >= len(BAD_INPUTS)
                and sum(s["status"] == "rejected" for s in statuses(reader, pipeline))
                >= len(BAD_INPUTS)
            ),
            what="good-1 delivered and every bad input rejected",
        )
        invalid = [r.json() for r in reader.on(pipeline.topics.invalid)]
        assert len(invalid) == len(BAD_INPUTS)
        by_digest = {r["raw_sha256"]: r for r in invalid}
        for _, raw, expected in BAD_INPUTS:
            assert raw is not None
            record = by_digest[hashlib.sha256(raw).hexdigest()]
            kept = (
                base64.b64decode(record["raw"])
                if record["raw_encoding"] == "base64"
                else record["raw"].encode()
            )
            # The whole value, or a prefix of it for the one over the limit.
            assert raw.startswith(kept)
            assert (kept == raw) is not record["raw_truncated"]
            assert expected in record["error"], record
            assert record["topic"] == pipeline.topics.events
        rejected = [s for s in statuses(reader, pipeline) if s["status"] == "rejected"]
        assert len(rejected) == len(BAD_INPUTS)
        process = pipeline.workers[0].process
        assert process is not None
        assert process.poll() is None


async def test_preference_update_takes_effect_for_the_next_event(pipeline: Pipeline) -> None:
    pipeline.worker().start()
    only_email = {"email": True, "sms": False, "push": False, "in_app": False, "webhook": False}
    await produce_json(
        pipeline.bootstrap, pipeline.topics.preferences, [preferences("erin", channels=only_email)]
    )
    wait_for_preferences(pipeline, "erin")
    await produce_json(pipeline.bootstrap, pipeline.topics.events, [event("before", "erin")])
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: len(deliveries(reader, pipeline)) >= 1, what="first delivery"
        )
        only_sms = {"email": False, "sms": True, "push": False, "in_app": False, "webhook": False}
        await produce_json(
            pipeline.bootstrap,
            pipeline.topics.preferences,
            [preferences("erin", channels=only_sms)],
        )
        wait_for_preferences(pipeline, "erin", check=lambda p: p["channels"]["sms"])
        await produce_json(pipeline.bootstrap, pipeline.topics.events, [event("after", "erin")])
        await reader.wait_for(
            lambda _: len(deliveries(reader, pipeline)) >= 2, what="second delivery"
        )
        routed = {d["event_ids"][0]: d["channel"] for d in deliveries(reader, pipeline)}
        assert routed == {"before": "email", "after": "sms"}
        # A tombstone deletes the user: only in_app is left for a user without preferences.
        await produce(pipeline.bootstrap, pipeline.topics.preferences, [(b"erin", None)])
        # The two topics are not ordered against each other: wait for the tombstone.
        wait_for_no_preferences(pipeline, "erin")
        await produce_json(pipeline.bootstrap, pipeline.topics.events, [event("gone", "erin")])
        await reader.wait_for(
            lambda _: len(deliveries(reader, pipeline)) >= 3, what="third delivery"
        )
        assert [
            d["channel"] for d in deliveries(reader, pipeline) if d["event_ids"] == ["gone"]
        ] == ["in_app"]


def _delivered_ids(records: list[Received], pipeline: Pipeline) -> Counter[str]:
    prefix = f"{pipeline.prefix}deliver."
    return Counter(r.json()["event_ids"][0] for r in records if r.topic.startswith(prefix))


async def test_sigkill_and_restart_lose_nothing_and_resend_nothing(pipeline: Pipeline) -> None:
    worker = pipeline.worker(CLARION_COMMIT_BATCH="50").start()
    users = [f"user-{n}" for n in range(20)]
    in_app_only = {"email": False, "sms": False, "push": False, "in_app": True, "webhook": False}
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [preferences(u, channels=in_app_only) for u in users],
    )
    wait_for_preferences(pipeline, users[-1])
    first = [event(f"a-{n}", users[n % 20]) for n in range(20_000)]
    second = [event(f"b-{n}", users[n % 20]) for n in range(5_000)]
    deliver_topic = pipeline.topics.deliver("in_app")
    async with pipeline.reader(deliver_topic) as reader:
        await produce_json(pipeline.bootstrap, pipeline.topics.events, first)
        # Kill while the first wave is half-way through, with transactions in flight.
        await reader.wait_for(lambda r: len(r) >= 2_000, what="some deliveries before the kill")
        worker.kill()
        await produce_json(pipeline.bootstrap, pipeline.topics.events, second)
        worker.start()  # the same data directory, as a restarted machine would have
        total = len(first) + len(second)
        await reader.wait_for(lambda r: len(r) >= total, deadline_s=180, what=f"{total} deliveries")
        delivered = _delivered_ids(reader.records, pipeline)
        expected = {e["event_id"] for e in first + second}
        assert set(delivered) == expected, f"missing: {sorted(expected - set(delivered))[:10]}"
        assert max(delivered.values()) == 1, [k for k, v in delivered.items() if v > 1][:10]
