"""``GET /metrics`` in the Prometheus text format, and the timers that keep its gauges fresh.

Counters and histograms are updated by the agents as they work (:mod:`pipeline.metrics`). Two
gauges need to ask Kafka instead, on a timer rather than per scrape so a scrape never waits on
the broker:

* consumer lag per assigned partition of the topics Clarion reads: for the batch runtime's
  topics, the last stable offset minus the consumer's position (ahead of the commit by at
  most the batch in hand); for Faust's agents, the partition's high watermark minus the
  offset Faust last committed for this worker.
  Topics written in transactions (the channel and status topics) end in commit markers that are
  never delivered, so never committed: when everything read is committed, the consumer's fetch
  position, which skips them, says how far the partition is done.
* the size of the dead-letter topic: end minus start offsets over its partitions. Every worker
  exports the same value; dashboards take the ``max``.
"""

from __future__ import annotations

import asyncio
import logging
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
_LAG_TIMEOUT_S = 4.0


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
            lag = await asyncio.wait_for(consumer_lag(app, watched), _LAG_TIMEOUT_S)
            lag += await asyncio.wait_for(clarion.route.lag(), _LAG_TIMEOUT_S)
            metrics.set_consumer_lag(lag)
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


async def consumer_lag(app: faust.App, watched: frozenset[str]) -> list[tuple[str, int, int]]:
    """(topic, partition, records behind) for this worker's assigned partitions of ``watched``."""
    consumer = app.consumer
    lag = []
    for tp in consumer.assignment():
        if tp.topic not in watched:
            continue
        # Typed int, but None until the partition's first fetch response.
        highwater: int | None = consumer.highwater(tp)
        if highwater is None:
            continue
        position = await _processed_position(app, tp, highwater)
        if position is not None:
            lag.append((tp.topic, tp.partition, max(0, highwater - position)))
    return sorted(lag)


async def _processed_position(app: faust.App, tp: TP, highwater: int) -> int | None:
    """The offset after the last record of ``tp`` this worker is done with.

    Read from what the consumer already knows; it is asked for its fetch position only when
    that cannot tell: nothing read or committed yet (a new group), or everything read is
    committed and the end is further (transaction markers, never delivered, or records not
    yet handed over).
    """
    consumer = app.consumer
    # Faust keeps no public accessor for these. After a seek both hold the committed offset;
    # then read is the offset of the last record handed to an agent, committed the next one.
    committed: int | None = getattr(consumer, "_committed_offset", {}).get(tp)
    read: int | None = getattr(consumer, "_read_offset", {}).get(tp)
    acked = app.topics.acks_enabled_for(tp.topic)
    if read is None and (committed is None or not acked):
        # An empty partition is not behind; otherwise the consumer starts where it was reset.
        return 0 if highwater == 0 else await consumer.position(tp)
    if not acked or committed is None:
        # The events topic is committed by the outbox, not Faust: what was handed to the agent
        # stands in. Elsewhere, nothing was committed yet.
        return None if read is None else read + 1
    if read is None or committed != read + 1 or committed >= highwater:
        return committed
    fetched = await consumer.position(tp)
    return committed if fetched is None else max(committed, min(fetched, highwater))


async def topic_size(consumer: Any, partitions: list[TP]) -> int:
    """Records retained in ``partitions``: end minus start offsets, summed."""
    earliest = await consumer.earliest_offsets(*partitions)
    latest = await consumer.highwaters(*partitions)
    return sum(max(0, latest[tp] - earliest.get(tp, 0)) for tp in partitions if tp in latest)
