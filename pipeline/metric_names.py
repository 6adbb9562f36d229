"""Names of the Prometheus metrics a worker exports on ``GET /metrics``: the single list.

:class:`pipeline.metrics.Metrics` builds every metric from these constants, and
``tests/test_docker_compose.py`` checks that ``deploy/grafana/dashboards/clarion.json`` queries
only names that a ``Metrics()`` registry really exports (a histogram's ``_bucket``, ``_sum`` and
``_count`` series count as its base name). Renaming a metric is a breaking change for
operators' dashboards and alerts: update the dashboard with it.

Conventions: every name starts with ``clarion_``; counters end in ``_total``; durations are
in seconds and end in ``_seconds``; counts of Kafka records end in ``_records``. Label values
are bounded sets (channels, statuses, priorities, provider names, a fixed list of
suppression-reason kinds, topic partitions), never free text.
"""

from __future__ import annotations

# counter: every record read from the events topic, valid or not.
EVENTS_RECEIVED = "clarion_events_received_total"
# counter, label outcome (accepted | rejected | duplicate): what ingest made of an event.
EVENTS = "clarion_events_total"
# counter, labels status and channel ("none" for event-level statuses): every status change
# a worker publishes to the status topic (the contract's statuses).
STATUSES = "clarion_notification_statuses_total"
# counter, label channel: deliveries queued on a channel topic (digests and released holds too).
ROUTED = "clarion_routed_total"
# counter, labels reason (a kind, see pipeline.metrics.SUPPRESSION_KINDS) and channel.
SUPPRESSED = "clarion_suppressed_total"
# counter, label kind (held | digest | retry): timer rows the sweep released.
RELEASED = "clarion_released_total"
# histogram, label channel: events per digest emitted; its _count is the digests emitted.
DIGEST_EVENTS = "clarion_digest_events"
# counter, labels channel, provider and outcome (sent | transient_error | permanent_error |
# circuit_open): delivery attempts.
DELIVERIES = "clarion_deliveries_total"
# counter, label channel: retries scheduled after a failed attempt.
RETRIES = "clarion_delivery_retries_total"
# counter, label channel: dead letters this worker wrote (given up on, or failed for good).
DEAD_LETTERS = "clarion_dead_letters_total"
# gauge: records in the dead-letter topic (end minus start offsets over its partitions).
DLQ_RECORDS = "clarion_dlq_records"
# histogram, labels channel and priority: the event's created_at until the provider took it.
DELIVERY_LATENCY = "clarion_delivery_latency_seconds"
# histogram, label agent: time one agent spends on one record.
AGENT_PROCESSING = "clarion_agent_processing_seconds"
# gauge, labels topic and partition: records of a partition this worker has not processed.
CONSUMER_LAG = "clarion_consumer_lag_records"
# counter, label topic (the events or preferences topic): records found on another partition
# than murmur2 of their key, forwarded to their user's partition through a repartition topic.
REPARTITIONED = "clarion_repartitioned_total"

EXPORTED_METRICS: frozenset[str] = frozenset(
    {
        EVENTS_RECEIVED,
        EVENTS,
        STATUSES,
        ROUTED,
        SUPPRESSED,
        RELEASED,
        DIGEST_EVENTS,
        DELIVERIES,
        RETRIES,
        DEAD_LETTERS,
        DLQ_RECORDS,
        DELIVERY_LATENCY,
        AGENT_PROCESSING,
        CONSUMER_LAG,
        REPARTITIONED,
    }
)
