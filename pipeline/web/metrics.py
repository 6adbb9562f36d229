"""``GET /metrics`` in the Prometheus text format, and the timers that keep its gauges fresh.

Counters and histograms are updated by the agents as they work (:mod:`pipeline.metrics`). Two
gauges need to ask Kafka instead, on a timer rather than per scrape so a scrape never waits on
the broker:

* consumer lag per assigned partition of the route and store runtimes' topics: the last
  stable offset minus the consumer's position (ahead of the commit by at most the batch in
  hand). The delivery runtime exports its own (``Metrics.set_delivery_lag``).
* the size of the dead-letter topic: end minus start offsets over its partitions. Every worker
  exports the same value; dashboards take the ``max``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, TopicPartition
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
    dlq_partitions = [TopicPartition(topics.dlq, p) for p in range(clarion.settings.partitions)]

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:  # noqa: ARG001
        # aiohttp refuses a charset inside content_type=, so the header is set whole.
        return web.bytes(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    @app.timer(LAG_INTERVAL_S, name="clarion.metrics.lag")  # type: ignore[untyped-decorator]
    async def refresh_lag() -> None:
        try:
            route, store = clarion.route.lag(), clarion.store.lag()
            lags = await asyncio.wait_for(asyncio.gather(route, store), _LAG_TIMEOUT_S)
            metrics.set_consumer_lag([entry for lag in lags for entry in lag])
        except Exception:  # the consumer may not be started, or may be rebalancing
            logger.debug("consumer lag unavailable", exc_info=True)
            metrics.set_consumer_lag(())

    # Of no group: it only asks for the dead-letter topic's offsets. Made on the worker's loop.
    offsets: AIOKafkaConsumer | None = None

    @app.timer(DLQ_INTERVAL_S, name="clarion.metrics.dlq")  # type: ignore[untyped-decorator]
    async def refresh_dlq() -> None:
        nonlocal offsets
        try:
            if offsets is None:
                offsets = AIOKafkaConsumer(
                    bootstrap_servers=clarion.settings.bootstrap_servers,
                    enable_auto_commit=False,
                    **clarion.settings.kafka_options,
                )
                await asyncio.wait_for(offsets.start(), _DLQ_TIMEOUT_S)
            size = await asyncio.wait_for(topic_size(offsets, dlq_partitions), _DLQ_TIMEOUT_S)
        except Exception:  # keep the last value; the next tick tries again
            logger.debug("dead-letter topic size unavailable", exc_info=True)
            return
        metrics.set_dlq_records(size)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_offsets(_sender: Any, *_: Any, signal: Any, **__: Any) -> None:  # noqa: ARG001
        if offsets is not None:
            await offsets.stop()


async def topic_size(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> int:
    """Records retained in ``partitions``: end minus start offsets, summed."""
    earliest = await consumer.beginning_offsets(partitions)
    latest = await consumer.end_offsets(partitions)
    return sum(max(0, latest[tp] - earliest.get(tp, 0)) for tp in partitions if tp in latest)
