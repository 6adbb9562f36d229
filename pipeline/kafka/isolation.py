"""Make Faust's worker consumer read committed records only.

Faust's aiokafka driver reads ``read_committed`` only in its own ``exactly_once`` mode,
which Clarion cannot use (see :mod:`pipeline.kafka.outbox`). The ingest agent writes its
output in transactions, and the agents downstream of it (delivery, status, inbox) must not
act on a batch whose transaction was aborted, such as the last batch of a worker killed
mid-commit: reading uncommitted, they would deliver it, and then deliver its replay again.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from pipeline.kafka.patching import original_method, require_instance_attribute

_PATCH = __name__
# The method as Faust defines it, and its parameters as this patch calls it.
TARGET = "_create_worker_consumer"
TARGET_PARAMETERS = ("self", "transport")
# aiokafka's consumer keeps the level here from __init__ and hands it on in start().
ISOLATION_ATTRIBUTE = "_isolation_level"
# Faust's, found (and checked) by install().
_original: Any = None


def _create_read_committed_consumer(self: AIOKafkaConsumerThread, transport: Any) -> Any:
    consumer = _original(self, transport)
    # Not started yet: aiokafka hands the level to its fetcher in start(). Checked here as
    # well as in install(), so an aiokafka that renames it never reads uncommitted.
    if getattr(consumer, ISOLATION_ATTRIBUTE, None) is None:
        raise RuntimeError("aiokafka's consumer no longer keeps _isolation_level")
    consumer._isolation_level = "read_committed"
    return consumer


def install() -> None:
    """Patch Faust's aiokafka consumer thread once per process (idempotent).

    Raises :class:`~pipeline.kafka.patching.PatchTargetError` when the Faust installed no
    longer has the method in the shape this patch wraps, or aiokafka's consumer no longer
    keeps its isolation level where the patch sets it.
    """
    global _original  # noqa: PLW0603 - found once, at install time, and checked
    if vars(AIOKafkaConsumerThread).get(TARGET) is _create_read_committed_consumer:
        return
    original = original_method(
        AIOKafkaConsumerThread,
        TARGET,
        parameters=TARGET_PARAMETERS,
        coroutine=False,
        patch=_PATCH,
    )
    require_instance_attribute(
        AIOKafkaConsumer, ISOLATION_ATTRIBUTE, set_in="__init__", read_in="start", patch=_PATCH
    )
    _original = original
    AIOKafkaConsumerThread._create_worker_consumer = _create_read_committed_consumer  # type: ignore[method-assign]
