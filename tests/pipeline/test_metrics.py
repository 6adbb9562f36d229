"""The worker's Prometheus metrics: names, conventions, and what the agents' calls count."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agents.dispatch import Arrival, Dispatcher, millis
from agents.records_out import OutputWriter
from agents.release import Sweeper
from agents.routing.channels import resolve_channels, suppression_reason
from agents.routing.render import TemplateRenderer
from agents.telemetry import CIRCUIT_OPEN, SENT, TRANSIENT_ERROR
from pipeline import metric_names
from pipeline.app import BUILTIN_TEMPLATES
from pipeline.metrics import SUPPRESSION_KINDS, Metrics, suppression_kind
from schemas.records import CHANNELS, NotificationEvent, UserPreferences
from tables.timers import TimerTable
from tests.helpers.metrics import exercised_metrics, exported
from tests.helpers.timers import TOPICS, commit, local_timer_table


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, as Prometheus would read the scrape."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, frozenset(labels.items())), 0.0)


def series(metrics: Metrics, name: str) -> list[dict[str, str]]:
    return [dict(labels) for sample, labels in samples(metrics) if sample == name]


# --- names ---------------------------------------------------------------------------------------


def test_the_registry_exports_exactly_the_listed_names() -> None:
    text = generate_latest(Metrics().registry).decode()
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE))
    assert declared == metric_names.EXPORTED_METRICS
    # Every family shows up once something was counted (exercised_metrics must keep up).
    assert set(exported(exercised_metrics())) == metric_names.EXPORTED_METRICS


def test_names_follow_prometheus_conventions() -> None:
    for name, (kind, labels) in exported(exercised_metrics()).items():
        assert re.fullmatch(r"clarion_[a-z][a-z0-9_]*[a-z]", name), name
        assert (kind == "counter") == name.endswith("_total"), f"{name} is a {kind}"
        if kind == "histogram" or "latency" in name or "time" in name:
            unit = name.removesuffix("_total").rsplit("_", 1)[-1]
            assert unit in {"seconds", "events"}, f"{name}: a histogram needs a unit suffix"
        if kind == "gauge":
            assert name.endswith("_records"), f"{name}: say what is counted"
        for label in labels:
            assert re.fullmatch(r"[a-z][a-z_]*", label), f"{name}: label {label!r}"
    assert metric_names.DELIVERY_LATENCY.endswith("_seconds")
    assert metric_names.AGENT_PROCESSING.endswith("_seconds")


def test_no_created_series() -> None:
    assert "_created" not in generate_latest(exercised_metrics().registry).decode()


# --- counts --------------------------------------------------------------------------------------


def test_statuses_feed_events_routed_and_suppressed() -> None:
    metrics = Metrics()
    metrics.event_in()
    metrics.event_in()
    metrics.status("accepted", None)
    metrics.status("rejected", None, "not JSON")
    metrics.status("duplicate", None, "event_id seen")
    metrics.status("queued", "email")
    metrics.status("queued", "email")
    metrics.status("queued", "sms")
    metrics.status("deferred", None, "held: quiet hours until ...")
    metrics.status("suppressed", "push", "channel disabled by the user")
    metrics.status("suppressed", None, "no deliverable channel: email: no email address")

    assert value(metrics, "clarion_events_received_total") == 2
    for outcome in ("accepted", "rejected", "duplicate"):
        assert value(metrics, "clarion_events_total", outcome=outcome) == 1
    assert value(metrics, "clarion_routed_total", channel="email") == 2
    assert value(metrics, "clarion_routed_total", channel="sms") == 1
    assert value(metrics, "clarion_routed_total", channel="push") == 0
    statuses = "clarion_notification_statuses_total"
    assert value(metrics, statuses, status="queued", channel="email") == 2
    assert value(metrics, statuses, status="deferred", channel="none") == 1
    suppressed = "clarion_suppressed_total"
    assert value(metrics, suppressed, reason="channel_disabled", channel="push") == 1
    assert value(metrics, suppressed, reason="no_address", channel="none") == 1


def test_label_values_stay_in_bounded_sets() -> None:
    metrics = Metrics()
    for index in range(50):
        metrics.status("suppressed", None, f"user opted out of 'category-{index}' on email")
        metrics.status("suppressed", "fax", f"something new {index}")
        metrics.status(f"weird-{index}", f"chan-{index}")
        metrics.delivery_latency(f"chan-{index}", f"prio-{index}", 1.0)
    assert {s["reason"] for s in series(metrics, "clarion_suppressed_total")} <= set(
        SUPPRESSION_KINDS
    )
    assert {s["channel"] for s in series(metrics, "clarion_suppressed_total")} == {"none", "other"}
    assert value(metrics, "clarion_suppressed_total", reason="opted_out", channel="none") == 50
    statuses = series(metrics, "clarion_notification_statuses_total")
    assert {s["status"] for s in statuses} == {"suppressed", "other"}
    assert (
        value(metrics, "clarion_notification_statuses_total", status="other", channel="other") == 50
    )
    latency = series(metrics, "clarion_delivery_latency_seconds_count")
    assert latency == [{"channel": "other", "priority": "other"}]


def test_delivery_counters_and_latency() -> None:
    metrics = Metrics()
    metrics.delivery("email", "smtp", SENT)
    metrics.delivery("email", "smtp", TRANSIENT_ERROR)
    metrics.delivery("email", "none", CIRCUIT_OPEN)
    metrics.retry("email")
    metrics.dead_letter("sms")
    now = datetime(2026, 1, 1, 12, 0, 2, tzinfo=UTC)
    metrics.sent("email", "high", "2026-01-01T12:00:00Z", now)
    metrics.sent("email", "high", "2026-01-01T11:59:59.500Z", now)
    metrics.sent("email", "high", None, now)  # unknown creation: nothing to observe
    metrics.sent("email", "high", "yesterday", now)

    deliveries = "clarion_deliveries_total"
    assert value(metrics, deliveries, channel="email", provider="smtp", outcome="sent") == 1
    assert value(metrics, deliveries, channel="email", provider="none", outcome="circuit_open") == 1
    assert value(metrics, "clarion_delivery_retries_total", channel="email") == 1
    assert value(metrics, "clarion_dead_letters_total", channel="sms") == 1
    latency = "clarion_delivery_latency_seconds"
    labels = {"channel": "email", "priority": "high"}
    assert value(metrics, f"{latency}_count", **labels) == 2
    assert value(metrics, f"{latency}_sum", **labels) == pytest.approx(4.5)
    assert value(metrics, f"{latency}_bucket", **labels, le="2.5") == 2
    assert value(metrics, f"{latency}_bucket", **labels, le="1.0") == 0
    assert value(metrics, f"{latency}_bucket", **labels, le="+Inf") == 2


def test_histogram_buckets_are_cumulative_and_inclusive() -> None:
    metrics = Metrics()
    observe = metrics.agent_timer("clarion.ingest")
    for seconds in (0.001, 0.0011, 20.0):
        observe(seconds)
    name = "clarion_agent_processing_seconds_bucket"
    assert value(metrics, name, agent="clarion.ingest", le="0.0005") == 0
    assert value(metrics, name, agent="clarion.ingest", le="0.001") == 1  # le: inclusive
    assert value(metrics, name, agent="clarion.ingest", le="0.0025") == 2
    assert value(metrics, name, agent="clarion.ingest", le="10.0") == 2
    assert value(metrics, name, agent="clarion.ingest", le="+Inf") == 3


def test_gauges_are_replaced_not_accumulated() -> None:
    metrics = Metrics()
    assert series(metrics, "clarion_dlq_records") == []  # unknown until first measured
    metrics.set_dlq_records(7)
    metrics.set_dlq_records(3)
    assert value(metrics, "clarion_dlq_records") == 3
    metrics.set_consumer_lag([("clarion.events", 0, 5), ("clarion.events", 1, 0)])
    metrics.set_consumer_lag([("clarion.events", 1, 2)])  # partition 0 was revoked
    lag = "clarion_consumer_lag_records"
    assert series(metrics, lag) == [{"topic": "clarion.events", "partition": "1"}]
    assert value(metrics, lag, topic="clarion.events", partition="1") == 2


def test_the_delivery_consumers_lag_is_exported_beside_the_other_runtimes() -> None:
    metrics = Metrics()
    metrics.set_consumer_lag([("clarion.events", 0, 5)])
    metrics.set_delivery_lag([("clarion.deliver.email", 0, 4)])
    metrics.set_consumer_lag([("clarion.events", 0, 1)])  # replaces the route and store part only
    lag = "clarion_consumer_lag_records"
    assert value(metrics, lag, topic="clarion.events", partition="0") == 1
    assert value(metrics, lag, topic="clarion.deliver.email", partition="0") == 4
    metrics.set_delivery_lag([])
    assert series(metrics, lag) == [{"topic": "clarion.events", "partition": "0"}]


# --- suppression reasons, as the routing code words them ------------------------------------------


def _event(**overrides: Any) -> NotificationEvent:
    data = {"event_id": "e1", "user_id": "u1", "category": "marketing", "priority": "normal"}
    return NotificationEvent.from_data(data | {"title": "t", "body": "b"} | overrides)


def _preferences(**overrides: Any) -> UserPreferences:
    return UserPreferences.from_data({"user_id": "u1"} | overrides)


@pytest.mark.parametrize(
    ("event", "preferences", "kind"),
    [
        (_event(channels=["email"]), _preferences(), "no_address"),
        (
            _event(channels=["email"]),
            _preferences(addresses={"email": "u@example.com"}, channels={"email": False}),
            "channel_disabled",
        ),
        (
            _event(channels=["email"]),
            _preferences(
                addresses={"email": "u@example.com"},
                categories={"marketing": {"email": False}},
            ),
            "opted_out",
        ),
        (_event(), _preferences(channels=dict.fromkeys(CHANNELS, False)), "channel_disabled"),
        (
            _event(channels=["email", "sms"]),
            _preferences(
                addresses={"email": "u@example.com"}, categories={"marketing": {"email": False}}
            ),
            "opted_out",  # the user's choice wins over sms having no number
        ),
    ],
)
def test_suppression_reasons_map_to_a_kind(
    event: NotificationEvent, preferences: UserPreferences, kind: str
) -> None:
    resolution = resolve_channels(event, preferences)
    assert not resolution.targets
    assert suppression_kind(suppression_reason(resolution)) == kind
    for reason in resolution.suppressed.values():
        assert suppression_kind(reason) in SUPPRESSION_KINDS


def test_reasons_of_the_sweep_and_unknown_text() -> None:
    assert suppression_kind("no deliverable channel") == "no_channel_left"
    assert suppression_kind("no deliverable channel left when the digest closed") == (
        "no_channel_left"
    )
    assert suppression_kind("unknown channel") == "unknown_channel"
    assert suppression_kind("the moon is full") == "other"
    assert suppression_kind(None) == "other"


# --- call sites ----------------------------------------------------------------------------------


def test_output_writer_counts_what_it_builds() -> None:
    metrics = Metrics()
    writer = OutputWriter(topics=TOPICS, partitions=8, metrics=metrics)
    delivery = {"user_id": "u1", "channel": "sms", "notification_id": "n1"}
    writer.status(
        notification_id="n1", status="sent", at="t", event_ids=[], user_id="u1", channel="sms"
    )
    writer.retry(delivery, partition=0)
    writer.dead_letter(delivery, partition=0)
    assert value(metrics, "clarion_notification_statuses_total", status="sent", channel="sms") == 1
    assert value(metrics, "clarion_delivery_retries_total", channel="sms") == 1
    assert value(metrics, "clarion_dead_letters_total", channel="sms") == 1
    # Without metrics (as tests build it) the writer works the same.
    OutputWriter(topics=TOPICS, partitions=8).status(
        notification_id="n1", status="sent", at="t", event_ids=[], user_id="u1"
    )


PARTITION = 1
WINDOW_START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_sweep_counts_released_rows_and_digest_sizes(tmp_path: Path) -> None:
    metrics = Metrics()
    table = local_timer_table(tmp_path / "timers")
    preferences = {
        "u1": _preferences(
            addresses={"email": "u@example.com"},
            channels={"sms": False, "push": False, "webhook": False, "in_app": False},
            digest={"enabled": True, "window": "hourly"},
        )
    }
    timers = TimerTable(table=table)
    dispatcher = Dispatcher(
        writer=OutputWriter(topics=TOPICS, partitions=8, metrics=metrics),
        renderer=TemplateRenderer(template_dirs=[BUILTIN_TEMPLATES]),
        timers=timers,
        preferences=preferences,
        default_caps={},
        digest_window_seconds=3600.0,
    )
    clock = _Clock(WINDOW_START + timedelta(minutes=5))
    sweeper = Sweeper(
        dispatcher=dispatcher, timers=timers, preferences=preferences, clock=clock, metrics=metrics
    )
    send_at = "2026-03-02T10:30:00Z"
    events = [
        _event(event_id="low-1", priority="low", category="social"),
        _event(event_id="low-2", priority="low", category="social"),
        _event(event_id="later", priority="high", category="billing", send_at=send_at),
    ]
    for sequence, event in enumerate(events):
        arrival = Arrival(partition=PARTITION, sequence=sequence, arrived_ms=millis(clock.now))
        records = dispatcher.dispatch(event, arrival, clock.now)
        table.stage(PARTITION, records)
        commit(table, PARTITION, records)
    statuses = "clarion_notification_statuses_total"
    assert value(metrics, statuses, status="deferred", channel="none") == 3

    clock.now = WINDOW_START + timedelta(minutes=30)
    commit(table, PARTITION, sweeper.sweep(PARTITION))
    assert value(metrics, "clarion_released_total", kind="held") == 1
    assert value(metrics, "clarion_digest_events_count", channel="email") == 0

    clock.now = WINDOW_START + timedelta(hours=1)
    commit(table, PARTITION, sweeper.sweep(PARTITION))
    assert value(metrics, "clarion_released_total", kind="digest") == 1
    assert value(metrics, "clarion_digest_events_count", channel="email") == 1
    assert value(metrics, "clarion_digest_events_sum", channel="email") == 2
    assert value(metrics, statuses, status="digested", channel="email") == 2
    assert value(metrics, "clarion_routed_total", channel="email") == 2  # "later" + the digest
