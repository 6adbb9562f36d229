"""What a worker's metrics registry exports, read back from the Prometheus text format."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agents.telemetry import SENT
from pipeline.metrics import Metrics


def exercised_metrics() -> Metrics:
    """A registry with at least one series in every family, so its labels are visible."""
    metrics = Metrics()
    metrics.event_in()
    metrics.status("accepted", None)
    metrics.status("queued", "email")
    metrics.status("suppressed", None, "no deliverable channel: email: no email address")
    metrics.released("held")
    metrics.digest("email", 3)
    metrics.delivery("email", "smtp", SENT)
    metrics.retry("sms")
    metrics.dead_letter("sms")
    metrics.set_dlq_records(2)
    metrics.delivery_latency("email", "high", 0.2)
    metrics.agent_timer("clarion.ingest")(0.001)
    metrics.set_consumer_lag([("clarion.events", 0, 3)])
    metrics.repartitioned("clarion.events")
    return metrics


def exported(metrics: Metrics) -> dict[str, tuple[str, frozenset[str]]]:
    """Exported name (``_total`` included, histograms by base name) -> (type, label names)."""
    text = generate_latest(metrics.registry).decode()
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for family in text_string_to_metric_families(text):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = frozenset(label for sample in family.samples for label in sample.labels)
        found[name] = (family.type, labels - {"le"})
    return found
