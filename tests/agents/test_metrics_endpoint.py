"""``GET /metrics`` of a real worker moves as events flow through it."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agents.records_out import utc_iso
from pipeline.kafka.local import free_port
from tests.agents.conftest import Pipeline
from tests.helpers.kafka import produce, produce_json
from tests.helpers.pipeline_io import event, preferences

pytestmark = pytest.mark.integration

Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(port: int) -> tuple[str, Scrape]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    values = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return content_type, values


def _preferences_stored(port: int, user_id: str) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/users/{user_id}/preferences", timeout=5
        ) as response:
            return response.status == 200
    except urllib.error.HTTPError as exc:
        if exc.code in {404, 503}:  # not there yet, or its partition is being assigned
            return False
        raise


def _get(values: Scrape, name: str, **labels: str) -> float:
    return values.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_count_what_the_worker_does(pipeline: Pipeline) -> None:
    # Nothing listens on that SMTP port: email attempts fail and are retried (in an hour).
    worker = pipeline.worker(CLARION_SMTP_PORT=str(free_port())).start()
    user = preferences("mia", channels={"email": True, "sms": False, "push": False, "in_app": True})
    await produce_json(pipeline.bootstrap, pipeline.topics.preferences, [user])
    deadline = time.monotonic() + 60
    while not await asyncio.to_thread(_preferences_stored, worker.web_port, "mia"):
        assert time.monotonic() < deadline, "the preferences never reached the table"
        await asyncio.sleep(0.1)  # polling interval of the deadline loop
    created = utc_iso(datetime.now(UTC) - timedelta(days=2))
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [event("m-1", "mia", created_at=created), event("m-1", "mia"), event("m-2", "mia")],
    )
    await produce(pipeline.bootstrap, pipeline.topics.events, [(b"mia", b"not json")])

    def settled(values: Scrape) -> bool:
        lag = _lag(values)
        events_partitions = [p for topic, p in lag if topic == pipeline.topics.events]
        # Read by Clarion's delivery consumer, not Faust's (pipeline/runtime/delivery.py).
        email_partitions = [p for topic, p in lag if topic == pipeline.topics.deliver("email")]
        return (
            _get(values, "clarion_events_received_total") >= 4
            and _get(values, "clarion_events_total", outcome="duplicate") >= 1
            and _get(values, "clarion_events_total", outcome="rejected") >= 1
            and _get(values, "clarion_delivery_retries_total", channel="email") >= 1
            and _get(
                values,
                "clarion_delivery_latency_seconds_count",
                channel="in_app",
                priority="high",
            )
            >= 2
            # Every partition of the events topic (one worker owns them all), and everything
            # caught up: transaction markers on the channel and status topics do not count.
            and len(events_partitions) == 4
            and len(email_partitions) == 4
            and not any(lag.values())
            and ("clarion_dlq_records", frozenset()) in values
        )

    deadline = time.monotonic() + 90
    content_type, values = await asyncio.to_thread(_scrape, worker.web_port)
    while not settled(values):
        assert time.monotonic() < deadline, f"metrics never settled: {sorted(values.items())}"
        await asyncio.sleep(0.25)  # polling interval of the deadline loop
        content_type, values = await asyncio.to_thread(_scrape, worker.web_port)

    assert content_type.startswith("text/plain")
    assert _get(values, "clarion_events_total", outcome="accepted") == 2
    assert _get(values, "clarion_routed_total", channel="email") == 2
    assert _get(values, "clarion_routed_total", channel="in_app") == 2
    assert (
        _get(values, "clarion_deliveries_total", channel="in_app", provider="inbox", outcome="sent")
        == 2
    )
    failed = [
        labels
        for name, labels in values
        if name == "clarion_deliveries_total" and ("outcome", "transient_error") in labels
    ]
    assert failed, "the email attempts should have failed transiently"
    # m-1 was created two days ago: beyond the last bucket; m-2 when it was routed.
    latency = "clarion_delivery_latency_seconds_bucket"
    labels = {"channel": "in_app", "priority": "high"}
    assert _get(values, latency, **labels, le="86400.0") == 1
    assert _get(values, latency, **labels, le="+Inf") == 2
    assert _get(values, "clarion_agent_processing_seconds_count", agent="clarion.ingest") >= 4
    assert _get(values, "clarion_dlq_records") == 0


def _lag(values: Scrape) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["topic"], dict(labels)["partition"]): value
        for (name, labels), value in values.items()
        if name == "clarion_consumer_lag_records"
    }
