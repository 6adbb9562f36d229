"""Make a restarted worker re-read stream partitions that have no committed offset yet.

When Faust resumes streams after a rebalance it seeks every partition to its committed
offset and drops what was fetched before. aiokafka's ``seek_to_committed`` only seeks when
the committed offset is above 0, so a partition with none keeps its fetch position: the
records fetched before the seek are dropped and never read again, and a later commit goes
past them. Seeking such partitions to their beginning restores at-least-once. Table
changelogs are left alone: Faust's recovery positions those itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from pipeline.kafka.patching import original_method, require_attribute

_FAUST_INTERNAL = ("-changelog", "__assignor-__leader")
_PATCH = __name__
# The method as Faust defines it, and its parameters as this patch calls it.
TARGET = "seek_to_committed"
TARGET_PARAMETERS = ("self",)
# Faust's, found (and checked) by install().
_original: Any = None


async def _seek_to_committed_or_beginning(self: AIOKafkaConsumerThread) -> Mapping[Any, int]:
    committed: Mapping[Any, int] = await _original(self)
    uncommitted = [
        tp
        for tp, offset in committed.items()
        if not offset and not tp.topic.endswith(_FAUST_INTERNAL)
    ]
    if uncommitted:
        consumer = self._ensure_consumer()
        await self.call_thread(consumer.seek_to_beginning, *uncommitted)
    return committed


def install() -> None:
    """Patch Faust's aiokafka consumer thread once per process (idempotent).

    Raises :class:`~pipeline.kafka.patching.PatchTargetError` when the Faust installed no
    longer has the method in the shape this patch wraps.
    """
    global _original  # noqa: PLW0603 - found once, at install time, and checked
    if vars(AIOKafkaConsumerThread).get(TARGET) is _seek_to_committed_or_beginning:
        return
    original = original_method(
        AIOKafkaConsumerThread,
        TARGET,
        parameters=TARGET_PARAMETERS,
        coroutine=True,
        patch=_PATCH,
    )
    for used in ("_ensure_consumer", "call_thread"):
        require_attribute(AIOKafkaConsumerThread, used, patch=_PATCH)
    _original = original
    AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_or_beginning  # type: ignore[method-assign]
