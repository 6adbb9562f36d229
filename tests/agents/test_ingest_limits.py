"""Limits on what an event may hold (issue 10), through a real broker and worker process.

Each shape here used to reach routing: a deep ``data`` broke orjson's writer, a long
template name broke the file system, and a ``send_at`` in year 9999 was held forever. They
must land on the invalid topic with a reason and status ``rejected``, and the worker must
keep going.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from pipeline.kafka.local import LocalKafka
from tests.helpers.deployment import Pipeline, deployment
from tests.helpers.kafka import TopicReader, produce, produce_json
from tests.helpers.pipeline_io import (
    all_topics,
    deliveries,
    event,
    preferences,
    statuses,
    wait_for_preferences,
)

pytestmark = pytest.mark.integration

# Beyond orjson's write limit of 254 levels, within its read limit of 1024.
DEEP = 300


@pytest.fixture(scope="module")
def shared(kafka: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """One worker for the module: every test uses users and event ids of its own."""
    setup = deployment(kafka, tmp_path_factory.mktemp("ingest-limits"))
    pipeline = next(setup)
    try:
        pipeline.worker().start()
        yield pipeline
    finally:
        setup.close()


def nested(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(levels - 1):
        value = {"next": value}
    return value


def raw_deep_event(event_id: str, user_id: str, levels: int) -> bytes:
    """An event whose ``data`` nests ``levels`` deep; written by hand, orjson cannot."""
    head = orjson.dumps(event(event_id, user_id, template="welcome", title=None, body=None))
    data = b'{"name": "Deep", "x": ' * (levels - 1) + b"{}" + b"}" * (levels - 1)
    return head[:-1] + b', "data": ' + data + b"}"


def invalid_records(reader: TopicReader, pipeline: Pipeline) -> dict[bytes, dict[str, Any]]:
    """The invalid topic's records by the raw bytes they hold."""
    records = [r.json() for r in reader.on(pipeline.topics.invalid)]
    return {
        base64.b64decode(r["raw"]) if r["raw_encoding"] == "base64" else r["raw"].encode(): r
        for r in records
    }


async def rejected_with_reasons(
    pipeline: Pipeline, user_id: str, bad: list[bytes], sentinel: str
) -> list[str]:
    """Send ``bad`` then a good event; once it is delivered, the reasons of every bad one."""
    messages = [(user_id.encode(), raw) for raw in bad]
    messages.append((user_id.encode(), orjson.dumps(event(sentinel, user_id))))
    await produce(pipeline.bootstrap, pipeline.topics.events, messages)
    async with pipeline.reader(*all_topics(pipeline)) as reader:
        await reader.wait_for(
            lambda _: (
                any(d["event_ids"] == [sentinel] for d in deliveries(reader, pipeline))
                and set(bad) <= invalid_records(reader, pipeline).keys()
            ),
            what=f"{sentinel} delivered and every bad event on the invalid topic",
        )
        await reader.catch_up()
        invalid = invalid_records(reader, pipeline)
        reasons = [invalid[raw]["error"] for raw in bad]
        rejected = {s["reason"] for s in statuses(reader, pipeline) if s["status"] == "rejected"}
        assert set(reasons) <= rejected
    for reason in reasons:
        assert "internal error" not in reason, reason
    return reasons


async def test_data_nested_too_deep_is_rejected_with_its_depth(shared: Pipeline) -> None:
    too_deep = raw_deep_event("deep-1", "deep-user", DEEP)
    at_limit = raw_deep_event("deep-ok", "deep-user", 64)
    [reason] = await rejected_with_reasons(shared, "deep-user", [too_deep], "deep-sentinel")
    assert reason == f"field 'data' nests {DEEP} levels deep; at most 64 are allowed"
    # 64 levels are fine: the event is routed like any other.
    await produce(shared.bootstrap, shared.topics.events, [(b"deep-user", at_limit)])
    async with shared.reader(*all_topics(shared)) as reader:
        await reader.wait_for(
            lambda _: any(d["event_ids"] == ["deep-ok"] for d in deliveries(reader, shared)),
            what="the 64-level event delivered",
        )


async def test_template_names_outside_the_rule_are_rejected_with_the_rule(
    shared: Pipeline,
) -> None:
    names = ["t" * 300, "../welcome", "welcome/../welcome", "a..b", ".hidden", "wel come"]
    bad = [
        orjson.dumps(
            event(f"tpl-{n}", "tpl-user", template=name, data={"name": "x"}, title=None, body=None)
        )
        for n, name in enumerate(names)
    ]
    reasons = await rejected_with_reasons(shared, "tpl-user", bad, "tpl-sentinel")
    for name, reason in zip(names, reasons, strict=True):
        assert "field 'template'" in reason, (name, reason)
        assert "File name too long" not in reason
    assert "at most 128 characters (got 300)" in reasons[0]
    assert "letters, digits" in reasons[1]


async def test_send_at_and_expires_at_beyond_the_hold_horizon_are_rejected(
    shared: Pipeline,
) -> None:
    soon = (datetime.now(UTC) + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    bad = [
        orjson.dumps(event("far-send", "far-user", send_at="9999-12-31T23:59:59Z")),
        orjson.dumps(event("far-expiry", "far-user", expires_at="9999-01-01T00:00:00+02:00")),
    ]
    reasons = await rejected_with_reasons(shared, "far-user", bad, "far-sentinel")
    assert reasons[0].startswith(
        "field 'send_at' (9999-12-31T23:59:59Z) is more than 365 days ahead"
    ), reasons[0]
    assert "CLARION_MAX_HOLD" in reasons[0]
    assert reasons[1].startswith("field 'expires_at' (9999-01-01T00:00:00+02:00) is more than")
    # Within the horizon: held as before.
    await produce(
        shared.bootstrap,
        shared.topics.events,
        [(b"far-user", orjson.dumps(event("near-send", "far-user", send_at=soon)))],
    )
    async with shared.reader(shared.topics.status) as reader:
        await reader.wait_for(
            lambda _: any(
                s["notification_id"] == "near-send" and s["status"] == "deferred"
                for s in statuses(reader, shared)
            ),
            what="the event 30 days ahead deferred",
        )


async def test_links_from_event_data_keep_only_web_and_mail_schemes(shared: Pipeline) -> None:
    await produce_json(shared.bootstrap, shared.topics.preferences, [preferences("linda")])
    await asyncio.to_thread(wait_for_preferences, shared, "linda")
    urls = {
        "link-js": "javascript:alert(document.cookie)",
        "link-js-spelled": " JaVa\tScript:alert(1)",
        "link-data": "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "link-https": "https://example.com/finish?step=1&via=mail",
        "link-mailto": "mailto:help@example.com",
    }
    await produce_json(
        shared.bootstrap,
        shared.topics.events,
        [
            event(
                event_id,
                "linda",
                template="welcome",
                data={"name": "Linda", "action_url": url},
                title=None,
                body=None,
                channels=["email"],
            )
            for event_id, url in urls.items()
        ],
    )
    async with shared.reader(*all_topics(shared)) as reader:

        def lindas() -> dict[str, str]:
            # The module's worker is shared: other tests' deliveries are on the topics too.
            return {
                d["event_ids"][0]: d["html"]
                for d in deliveries(reader, shared)
                if d["user_id"] == "linda"
            }

        await reader.wait_for(lambda _: len(lindas()) == len(urls), what="every welcome email")
        html = lindas()
    for event_id in ("link-js", "link-js-spelled", "link-data"):
        assert "href" not in html[event_id], html[event_id]
        # The words stay, as plain text: the reader still sees what the email says.
        assert "Finish setting up your account" in html[event_id]
    assert '<a href="https://example.com/finish?step=1&amp;via=mail">' in html["link-https"]
    assert '<a href="mailto:help@example.com">' in html["link-mailto"]
