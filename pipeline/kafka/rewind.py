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

_FAUST_INTERNAL = ("-changelog", "__assignor-__leader")
_original = AIOKafkaConsumerThread.seek_to_committed


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
    """Patch Faust's aiokafka consumer thread once per process (idempotent)."""
    if AIOKafkaConsumerThread.seek_to_committed is not _seek_to_committed_or_beginning:
        AIOKafkaConsumerThread.seek_to_committed = _seek_to_committed_or_beginning  # type: ignore[method-assign]
