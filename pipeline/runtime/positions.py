"""Where a runtime consumer starts on a newly assigned partition.

At its committed offset, read when this is called (after the caller fenced earlier owners,
if it writes transactions). A partition its group never committed starts where the group of
earlier versions (Faust's, ``<prefix><app id>``) left it, for the topics that group read, so
an upgrade neither re-sends what was delivered nor re-routes what was routed; anything else
starts at the beginning (the compacted preferences topic: its state is rebuilt from it).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

logger = logging.getLogger(__name__)


async def seek_to_start(
    consumer: AIOKafkaConsumer,
    assigned: Iterable[TopicPartition],
    *,
    legacy_group_id: str | None,
    legacy_topics: Collection[str],
    client_options: Mapping[str, Any],
    bootstrap_servers: str,
    reposition_committed: bool = True,
) -> None:
    """``reposition_committed``: seek partitions with a committed offset to it as well (a
    consumer that fenced earlier owners since aiokafka read the offsets); the caller keeps
    the partitions paused until this returns."""
    uncommitted: list[TopicPartition] = []
    for tp in assigned:
        committed = await consumer.committed(tp)
        if committed is None:
            uncommitted.append(tp)
        elif reposition_committed:
            consumer.seek(tp, committed)
    legacy: dict[TopicPartition, int] = {}
    inherited = [tp for tp in uncommitted if tp.topic in legacy_topics]
    if inherited and legacy_group_id is not None:
        legacy = await _committed_by(
            legacy_group_id, inherited, bootstrap_servers=bootstrap_servers, options=client_options
        )
    for tp in uncommitted:
        if tp in legacy:
            logger.info(
                "%s[%d]: starting at %d, where group %s left it", *tp, legacy[tp], legacy_group_id
            )
            consumer.seek(tp, legacy[tp])
        else:
            await consumer.seek_to_beginning(tp)


async def _committed_by(
    group_id: str,
    tps: list[TopicPartition],
    *,
    bootstrap_servers: str,
    options: Mapping[str, Any],
) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **options)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group_id, partitions=tps)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}
