"""Names of the Prometheus metrics that dashboards and alerts rely on.

``deploy/grafana/dashboards/clarion.json`` may only query these base names (histogram
``_bucket``/``_sum``/``_count`` series count as their base name); ``tests/test_docker_compose.py``
checks it. Renaming a metric is a breaking change for operators: update the dashboard too.
"""

from __future__ import annotations

DASHBOARD_METRICS: frozenset[str] = frozenset(
    {
        # counter, label outcome: every event read from the events topic
        "clarion_events_total",
        # counter, label channel: deliveries written to the per-channel topics
        "clarion_routed_total",
        # counter, label reason: notifications with no channel left
        "clarion_suppressed_total",
        # histogram, label agent: time spent on one record
        "clarion_agent_processing_seconds",
        # gauge, labels topic and partition: records behind the end of the partition
        "clarion_consumer_lag",
    }
)
