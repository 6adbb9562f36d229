"""``GET /metrics`` in the Prometheus text format, and the timers that keep its gauges fresh.

Counters and histograms are updated by the agents as they work (:mod:`pipeline.metrics`). Two
gauges need to ask Kafka instead, on a timer rather than per scrape so a scrape never waits on
the broker:

* consumer lag per assigned partition of the topics Clarion's agents read: the partition's
  high watermark minus the offset Faust last committed for this worker. The events topic is
  committed by the transactional outbox, not by Faust, so there the offset after the last
  record handed to the ingest agent stands in (it runs ahead of the commit by at most the
  commit linger, and is one too high right after a rebalance, before a record was read).
  On topics written in transactions (the channel and status topics) a partition at rest can
  show a lag of 1: the commit marker after the last record is never delivered, so it is never
  committed either.
* the size of the dead-letter topic: end minus start offsets over its partitions. Every worker
  exports the same value; dashboards take the ``max``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import faust
from faust.types import TP
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from pipeline.app import Clarion

logger = logging.getLogger(__name__)

LAG_INTERVAL_S = 5.0
DLQ_INTERVAL_S = 15.0
_DLQ_TIMEOUT_S = 10.0


def register_metrics(clarion: Clarion) -> None:
    app = clarion.app
    metrics = clarion.metrics
    registry = metrics.registry
    topics = clarion.topics
    # The topics Faust consumes for Clarion's agents; changelogs and the timers table's own
    # consumer are left out.
    watched = frozenset(topics.user_keyed() + topics.other()) - {topics.dlq, topics.timers}
    dlq_partitions = [TP(topics.dlq, p) for p in range(clarion.settings.partitions)]

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:  # noqa: ARG001
        # aiohttp refuses a charset inside content_type=, so the header is set whole.
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.timer(LAG_INTERVAL_S, name="clarion.metrics.lag")  # type: ignore[untyped-decorator]
    async def refresh_lag() -> None:
        try:
            metrics.set_consumer_lag(consumer_lag(app, watched))
        except Exception:  # the consumer may not be started, or may be rebalancing
            logger.debug("consumer lag unavailable", exc_info=True)
            metrics.set_consumer_lag(())

    @app.timer(DLQ_INTERVAL_S, name="clarion.metrics.dlq")  # type: ignore[untyped-decorator]
    async def refresh_dlq() -> None:
        try:
            size = await asyncio.wait_for(topic_size(app.consumer, dlq_partitions), _DLQ_TIMEOUT_S)
        except Exception:  # keep the last value; the next tick tries again
            logger.debug("dead-letter topic size unavailable", exc_info=True)
            return
        metrics.set_dlq_records(size)


def consumer_lag(app: faust.App, watched: frozenset[str]) -> list[tuple[str, int, int]]:
    """(topic, partition, records behind) for this worker's assigned partitions of ``watched``."""
    consumer = app.consumer
    # Faust keeps no public accessor for these; both map TP -> offset (or None).
    committed: Mapping[TP, int | None] = getattr(consumer, "_committed_offset", {})
    last_read: Mapping[TP, int | None] = getattr(consumer, "_read_offset", {})
    acks_enabled_for = app.topics.acks_enabled_for
    lag = []
    for tp in consumer.assignment():
        if tp.topic not in watched:
            continue
        # Typed int, but None until the partition's first fetch response.
        highwater: int | None = consumer.highwater(tp)
        if highwater is None:
            continue
        position = committed.get(tp) if acks_enabled_for(tp.topic) else None
        if position is None:
            read = last_read.get(tp)
            position = None if read is None else read + 1
        if position is None:
            continue
        lag.append((tp.topic, tp.partition, max(0, highwater - position)))
    return sorted(lag)


async def topic_size(consumer: Any, partitions: list[TP]) -> int:
    """Records retained in ``partitions``: end minus start offsets, summed."""
    earliest = await consumer.earliest_offsets(*partitions)
    latest = await consumer.highwaters(*partitions)
    return sum(max(0, latest[tp] - earliest.get(tp, 0)) for tp in partitions if tp in latest)
