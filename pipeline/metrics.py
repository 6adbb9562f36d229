"""Every Prometheus metric of a worker, in a registry of its own, behind small methods.

Agents call :class:`Metrics` where things happen (``metrics.event_in()``,
``metrics.status(...)``, ``metrics.delivery(...)``); ``pipeline/web/metrics.py`` serves the
registry on ``GET /metrics`` and keeps the gauges (consumer lag, dead-letter topic size) fresh.
The names live in :mod:`pipeline.metric_names`.

The pipeline is CPU bound, and a ``prometheus_client`` child costs 1-3 µs per ``inc`` or
``observe`` (a lock, argument checks, exemplars). The hot paths here are a dict increment or a
bisect instead (0.1-0.4 µs); ``prometheus_client`` only formats them, at scrape time, through
collectors. Everything runs on the worker's event loop, so no lock is needed. Label values are
normalised into bounded sets at scrape time: unknown channels, statuses and priorities become
``other``; suppression reasons (free text naming categories and channels) are reduced to one of
:data:`SUPPRESSION_KINDS` when counted.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import lru_cache

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from agents.telemetry import CIRCUIT_OPEN, PERMANENT_ERROR, SENT, TRANSIENT_ERROR
from pipeline import metric_names as names
from schemas.records import CHANNELS, PRIORITIES, STATUSES
from schemas.timestamps import parse_timestamp

OTHER = "other"
NO_CHANNEL = "none"

# Outcomes of one delivery attempt (label ``outcome`` of clarion_deliveries_total); the
# constants live with the agents that report them (agents/telemetry.py).
DELIVERY_OUTCOMES = (SENT, TRANSIENT_ERROR, PERMANENT_ERROR, CIRCUIT_OPEN)

# Kinds of timer rows the sweep releases (label ``kind`` of clarion_released_total).
HELD, DIGEST, RETRY = "held", "digest", "retry"
RELEASE_KINDS = (HELD, DIGEST, RETRY)

SUPPRESSION_KINDS = (
    "opted_out",  # the user opted out of the category on the channel
    "channel_disabled",  # the user disabled the channel
    "no_address",  # no email, phone, push token or webhook URL for the channel
    "unknown_channel",
    "no_channel_left",  # held or batched, and no channel was deliverable any more at release
    OTHER,
)
# When channels were dropped for different reasons, the kind is the first of these found: the
# user's own choices say the most about why a notification went nowhere.
_KIND_PRECEDENCE = ("opted_out", "channel_disabled", "no_address", "unknown_channel", OTHER)

EVENT_OUTCOMES = ("accepted", "rejected", "duplicate")

# Event created -> provider accepted it: milliseconds for critical sends, hours for held ones.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0, 3600.0, 4 * 3600.0, 24 * 3600.0,
)  # fmt: skip
# One record in one agent: ~1 ms to route an event, up to seconds for a slow provider.
PROCESSING_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
DIGEST_BUCKETS = (1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)

_CHANNELS = frozenset(CHANNELS)
_PRIORITIES = frozenset(PRIORITIES)
_STATUSES = frozenset(STATUSES)

_NO_DELIVERABLE_CHANNEL = "no deliverable channel"
_MISSING_ADDRESS = ("no email address", "no phone number", "no push token", "no webhook url")

Samples = Iterable[tuple[Sequence[str], float]]


def channel_label(channel: str | None) -> str:
    if channel is None:
        return NO_CHANNEL
    return channel if channel in _CHANNELS else OTHER


def _label(value: str | None, known: frozenset[str]) -> str:
    return value if value is not None and value in known else OTHER


def _one_reason_kind(text: str) -> str:
    lowered = text.lower()
    if "opted out" in lowered:
        return "opted_out"
    if "disabled" in lowered:
        return "channel_disabled"
    if lowered.startswith(_MISSING_ADDRESS):
        return "no_address"
    if "unknown channel" in lowered:
        return "unknown_channel"
    return OTHER


@lru_cache(maxsize=1024)
def suppression_kind(reason: str | None) -> str:
    """One of :data:`SUPPRESSION_KINDS` for a ``suppressed`` status's free-text reason.

    Reasons come from ``agents/routing/channels.py`` (per channel: "no email address", "user
    opted out of 'marketing' on sms", ...; for the event: "no deliverable channel: email: ...;
    sms: ...") and from the sweep ("no deliverable channel left when the digest closed").
    Cached: the same few reasons come back again and again.
    """
    if not reason:
        return OTHER
    if not reason.startswith(_NO_DELIVERABLE_CHANNEL):
        return _one_reason_kind(reason)
    details = reason[len(_NO_DELIVERABLE_CHANNEL) :].removeprefix(":").strip()
    if not details or details.startswith("left"):
        return "no_channel_left"
    if "every channel disabled" in details:
        return "channel_disabled"
    kinds = {_one_reason_kind(part.split(": ", 1)[-1]) for part in details.split("; ")}
    return next(kind for kind in _KIND_PRECEDENCE if kind in kinds)


def _sum_by(samples: Iterable[tuple[tuple[str, ...], float]]) -> Samples:
    """Samples whose label values collided after normalisation, added up."""
    totals: dict[tuple[str, ...], float] = {}
    for labels, value in samples:
        totals[labels] = totals.get(labels, 0) + value
    return totals.items()


class _Family:
    """A counter or gauge family whose samples a function computes at scrape time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        samples: Callable[[], Samples],
        *,
        gauge: bool = False,
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._samples = samples
        self._gauge = gauge

    def _empty(self) -> CounterMetricFamily | GaugeMetricFamily:
        kind = GaugeMetricFamily if self._gauge else CounterMetricFamily
        return kind(self._name, self._documentation, labels=self._labels)

    def describe(self) -> Iterable[Metric]:
        return [self._empty()]

    def collect(self) -> Iterable[Metric]:
        family = self._empty()
        for labels, value in self._samples():
            family.add_metric(list(labels), value)
        return [family]


class _Histogram:
    """One histogram series: bucket counts (not cumulative) and a sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Prometheus buckets are "less than or equal": the first bound >= value.
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


class _HistogramFamily:
    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], bounds: Sequence[float]
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._labels = list(labels)
        self._bounds = tuple(float(bound) for bound in bounds)
        # The ``le`` label values, formatted as prometheus_client formats its own.
        self._edges = [
            *(floatToGoString(bound) for bound in self._bounds),  # type: ignore[no-untyped-call]
            "+Inf",
        ]
        self._children: dict[tuple[str, ...], _Histogram] = {}

    def child(self, *labels: str) -> _Histogram:
        found = self._children.get(labels)
        if found is None:
            found = self._children[labels] = _Histogram(self._bounds)
        return found

    def _empty(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self._name, self._documentation, labels=self._labels)

    def describe(self) -> Iterable[Metric]:
        return [self._empty()]

    def collect(self) -> Iterable[Metric]:
        family = self._empty()
        for labels, series in self._children.items():
            cumulative, buckets = 0, []
            for edge, count in zip(self._edges, series.counts, strict=True):
                cumulative += count
                buckets.append((edge, float(cumulative)))
            family.add_metric(list(labels), buckets, series.sum)
        return [family]


class Metrics:
    """The worker's metrics; ``registry`` is what ``GET /metrics`` exports.

    Counting happens when a record is built, before the transaction that publishes it commits:
    a batch that is aborted and processed again is counted again. Counters are a rate signal,
    not an audit: the status topic is the audit log.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._events_received = 0
        # Raw (status, channel) counts: normalised into three families when scraped.
        self._statuses: dict[tuple[str, str | None], int] = {}
        self._suppressed: dict[tuple[str, str | None], int] = {}
        self._released = dict.fromkeys(RELEASE_KINDS, 0)
        self._deliveries: dict[tuple[str, str, str], int] = {}
        self._retries: dict[str, int] = {}
        self._dead_letters: dict[str, int] = {}
        self._dlq_records: int | None = None
        self._lag: tuple[tuple[str, int, int], ...] = ()
        self._delivery_lag: tuple[tuple[str, int, int], ...] = ()
        self._repartitioned: dict[str, int] = {}
        self._latency = _HistogramFamily(
            names.DELIVERY_LATENCY,
            "Time from an event's created_at until its provider accepted the delivery.",
            ["channel", "priority"],
            LATENCY_BUCKETS,
        )
        self._latency_children: dict[tuple[str, str | None], _Histogram] = {}
        self._digest_events = _HistogramFamily(
            names.DIGEST_EVENTS, "Events in each digest emitted.", ["channel"], DIGEST_BUCKETS
        )
        self._processing = _HistogramFamily(
            names.AGENT_PROCESSING,
            "Time an agent spends on one record.",
            ["agent"],
            PROCESSING_BUCKETS,
        )
        for collector in self._families():
            self.registry.register(collector)

    def _families(self) -> list[_Family | _HistogramFamily]:
        return [
            _Family(
                names.EVENTS_RECEIVED,
                "Records read from the events topic, valid or not.",
                [],
                lambda: [((), self._events_received)],
            ),
            _Family(
                names.EVENTS,
                "Events by what ingest made of them: accepted, rejected or duplicate.",
                ["outcome"],
                self._event_samples,
            ),
            _Family(
                names.STATUSES,
                "Status changes published, by status and channel (none: about the event).",
                ["status", "channel"],
                lambda: _sum_by(
                    ((_label(status, _STATUSES), channel_label(channel)), count)
                    for (status, channel), count in self._statuses.items()
                ),
            ),
            _Family(
                names.ROUTED,
                "Deliveries queued on a channel topic, digests and released holds included.",
                ["channel"],
                self._routed_samples,
            ),
            _Family(
                names.SUPPRESSED,
                "Suppressed notifications by kind of reason and channel (none: the whole event).",
                ["reason", "channel"],
                lambda: _sum_by(
                    ((kind, channel_label(channel)), count)
                    for (kind, channel), count in self._suppressed.items()
                ),
            ),
            _Family(
                names.RELEASED,
                "Timer rows released by the sweep: held events, closed digests, due retries.",
                ["kind"],
                lambda: [((kind,), count) for kind, count in self._released.items()],
            ),
            self._digest_events,
            _Family(
                names.DELIVERIES,
                "Delivery attempts by channel, provider and outcome.",
                ["channel", "provider", "outcome"],
                lambda: _sum_by(
                    ((channel_label(channel), provider, outcome), count)
                    for (channel, provider, outcome), count in self._deliveries.items()
                ),
            ),
            _Family(
                names.RETRIES,
                "Retries scheduled after a failed delivery attempt.",
                ["channel"],
                lambda: _by_channel(self._retries),
            ),
            _Family(
                names.DEAD_LETTERS,
                "Deliveries this worker wrote to the dead-letter topic.",
                ["channel"],
                lambda: _by_channel(self._dead_letters),
            ),
            _Family(
                names.DLQ_RECORDS,
                "Records in the dead-letter topic (end minus start offsets of its partitions).",
                [],
                lambda: [] if self._dlq_records is None else [((), self._dlq_records)],
                gauge=True,
            ),
            self._latency,
            self._processing,
            _Family(
                names.CONSUMER_LAG,
                "Records of an assigned partition after the last one this worker processed "
                "(committed; for the events topic, read).",
                ["topic", "partition"],
                lambda: [
                    ((topic, str(partition)), lag)
                    for topic, partition, lag in (*self._lag, *self._delivery_lag)
                ],
                gauge=True,
            ),
            _Family(
                names.REPARTITIONED,
                "Records found off their key's murmur2 partition (a producer on another "
                "partitioner), forwarded to their user's partition.",
                ["topic"],
                lambda: [((topic,), count) for topic, count in self._repartitioned.items()],
            ),
        ]

    def _event_samples(self) -> Samples:
        counts = dict.fromkeys(EVENT_OUTCOMES, 0)
        for (status, _), count in self._statuses.items():
            if status in counts:
                counts[status] += count
        return [((outcome,), count) for outcome, count in counts.items()]

    def _routed_samples(self) -> Samples:
        counts = dict.fromkeys(CHANNELS, 0)
        for (status, channel), count in self._statuses.items():
            if status == "queued" and channel is not None:
                label = channel_label(channel)
                counts[label] = counts.get(label, 0) + count
        return [((channel,), count) for channel, count in counts.items()]

    # --- ingest and routing ------------------------------------------------------------------

    def event_in(self) -> None:
        self._events_received += 1

    def status(self, status: str, channel: str | None, reason: str | None = None) -> None:
        """A status change was built (see the class docstring: before its commit)."""
        key = (status, channel)
        statuses = self._statuses
        statuses[key] = statuses.get(key, 0) + 1
        if status == "suppressed":
            key = (suppression_kind(reason), channel)
            self._suppressed[key] = self._suppressed.get(key, 0) + 1

    def repartitioned(self, topic: str) -> None:
        """A record of ``topic`` (events or preferences: bounded) was forwarded to its user."""
        self._repartitioned[topic] = self._repartitioned.get(topic, 0) + 1

    # --- timers --------------------------------------------------------------------------------

    def released(self, kind: str) -> None:
        """A timer row of ``kind`` (one of :data:`RELEASE_KINDS`) was released by the sweep."""
        kind = kind if kind in self._released else HELD
        self._released[kind] += 1

    def digest(self, channel: str, size: int) -> None:
        self._digest_events.child(channel_label(channel)).observe(size)

    # --- delivery ------------------------------------------------------------------------------

    def delivery(self, channel: str, provider: str, outcome: str) -> None:
        """One attempt; ``outcome`` is one of :data:`DELIVERY_OUTCOMES`."""
        key = (channel, provider, outcome if outcome in DELIVERY_OUTCOMES else OTHER)
        self._deliveries[key] = self._deliveries.get(key, 0) + 1

    def retry(self, channel: str) -> None:
        self._retries[channel] = self._retries.get(channel, 0) + 1

    def dead_letter(self, channel: str) -> None:
        self._dead_letters[channel] = self._dead_letters.get(channel, 0) + 1

    def delivery_latency(self, channel: str, priority: str | None, seconds: float) -> None:
        key = (channel, priority)
        child = self._latency_children.get(key)
        if child is None:
            child = self._latency.child(channel_label(channel), _label(priority, _PRIORITIES))
            if channel in _CHANNELS and priority in _PRIORITIES:
                self._latency_children[key] = child  # known values only: bounded
        child.observe(max(0.0, seconds))

    def sent(
        self, channel: str, priority: str | None, created_at: str | None, now: datetime
    ) -> None:
        """Observe the latency of a notification sent at ``now``, when its creation is known."""
        created = parse_timestamp(created_at) if created_at else None
        if created is not None:
            self.delivery_latency(channel, priority, (now - created).total_seconds())

    def set_dlq_records(self, count: int) -> None:
        self._dlq_records = count

    # --- agents and consumers ------------------------------------------------------------------

    def agent_timer(self, agent: str) -> Callable[[float], None]:
        """The ``observe`` of one agent's processing-time series: bind once, call per record."""
        return self._processing.child(agent).observe

    def set_consumer_lag(self, lag: Iterable[tuple[str, int, int]]) -> None:
        """Replace the lag snapshot: (topic, partition, records behind) per assigned partition.

        Partitions missing from the new snapshot (revoked) stop being exported.
        """
        self._lag = tuple(lag)

    def set_delivery_lag(self, lag: Iterable[tuple[str, int, int]]) -> None:
        """The same for the external channels' topics, which Clarion's delivery consumer
        reads (pipeline/runtime/delivery.py), not Faust's."""
        self._delivery_lag = tuple(lag)


def _by_channel(counts: dict[str, int]) -> Samples:
    return _sum_by(((channel_label(channel),), count) for channel, count in counts.items())
