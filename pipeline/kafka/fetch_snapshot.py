"""Keep Faust's fetch from moving past records that it then throws away.

Faust hands aiokafka its *live* set of active partitions, which rebalance handling changes
while the fetch runs. aiokafka reads an empty set as "every assigned partition", so a fetch
that catches the set empty returns records of paused stream partitions as well; Faust drops
them as inactive, yet aiokafka has already moved its position past them. Only a later seek
to the committed offsets brings them back; records dropped after that seek are never read
(seen as an event a worker never processed after taking over its partition).

The replacement fetch asks aiokafka for a snapshot of the set, fetches nothing when the
snapshot is empty, and seeks partitions paused while it ran back to their first returned
record, so those records come again once the partition is resumed.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence, Set
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from pipeline.kafka.patching import original_method

_PATCH = __name__
# The method as Faust defines it, and its parameters as this patch calls it (and takes).
TARGET = "_fetch_records"
TARGET_PARAMETERS = ("self", "consumer", "active_partitions", "timeout", "max_records")
# Faust's, found (and checked) by install(). Typed loosely: Faust annotates the partitions
# as a set, aiokafka takes any container.
_original: Any = None


def split_fetched(
    records: Mapping[Any, Sequence[Any]], active: Container[Any]
) -> tuple[dict[Any, Sequence[Any]], dict[Any, int]]:
    """The records to hand to Faust, and where to seek partitions that are paused now."""
    keep: dict[Any, Sequence[Any]] = {}
    rewind: dict[Any, int] = {}
    for tp, batch in records.items():
        if tp in active:
            keep[tp] = batch
        elif batch:
            rewind[tp] = batch[0].offset
    return keep, rewind


async def _fetch_snapshot(
    self: AIOKafkaConsumerThread,
    consumer: Any,
    active_partitions: Set[Any] | None,
    timeout: float | None = None,  # noqa: ASYNC109 - the signature Faust calls
    max_records: int | None = None,
) -> Mapping[Any, Sequence[Any]]:
    records: Mapping[Any, Sequence[Any]]
    if active_partitions is None:  # a client-only app reads every partition by design
        records = await _original(self, consumer, active_partitions, timeout, max_records)
        return records
    wanted = frozenset(active_partitions)
    if not wanted:
        return {}
    records = await _original(self, consumer, wanted, timeout, max_records)
    keep, rewind = split_fetched(records, active_partitions)
    assigned = consumer.assignment()
    for tp, offset in rewind.items():
        if tp in assigned:
            consumer.seek(tp, offset)
    return keep


def install() -> None:
    """Patch Faust's aiokafka consumer thread once per process (idempotent).

    Raises :class:`~pipeline.kafka.patching.PatchTargetError` when the Faust installed no
    longer has the method in the shape this patch wraps.
    """
    global _original  # noqa: PLW0603 - found once, at install time, and checked
    if vars(AIOKafkaConsumerThread).get(TARGET) is _fetch_snapshot:
        return
    _original = original_method(
        AIOKafkaConsumerThread,
        TARGET,
        parameters=TARGET_PARAMETERS,
        coroutine=True,
        patch=_PATCH,
    )
    AIOKafkaConsumerThread._fetch_records = _fetch_snapshot  # type: ignore[method-assign,assignment]
