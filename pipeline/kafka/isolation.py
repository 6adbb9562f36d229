"""Make Faust's worker consumer read committed records only.

Faust's aiokafka driver reads ``read_committed`` only in its own ``exactly_once`` mode,
which Clarion cannot use (see :mod:`pipeline.kafka.outbox`). The ingest agent writes its
output in transactions, and the agents downstream of it (delivery, status, inbox) must not
act on a batch whose transaction was aborted, such as the last batch of a worker killed
mid-commit: reading uncommitted, they would deliver it, and then deliver its replay again.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_original = AIOKafkaConsumerThread._create_worker_consumer


def _create_read_committed_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _original(self, transport)
    # Not started yet: aiokafka hands the level to its fetcher in start(). Checked, so an
    # aiokafka that renames the attribute fails at startup instead of reading uncommitted.
    if getattr(consumer, "_isolation_level", None) is None:
        raise RuntimeError("aiokafka's consumer no longer keeps _isolation_level")
    consumer._isolation_level = "read_committed"
    return consumer


def install() -> None:
    """Patch Faust's aiokafka consumer thread once per process (idempotent)."""
    if AIOKafkaConsumerThread._create_worker_consumer is not _create_read_committed_consumer:
        AIOKafkaConsumerThread._create_worker_consumer = _create_read_committed_consumer  # type: ignore[method-assign]
