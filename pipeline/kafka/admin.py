"""Create Clarion's topics up front, with equal partition counts for everything user-keyed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

logger = logging.getLogger(__name__)


_LEADER_WAIT_S = 30.0


class TopicLayoutError(RuntimeError):
    """An existing topic has a partition count that breaks co-partitioning."""


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)


async def ensure_topics(
    bootstrap_servers: str,
    specs: list[TopicSpec],
    *,
    client_options: Mapping[str, str] | None = None,
) -> list[str]:
    """Create the missing topics; return their names. Existing ones must match the layout."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    await admin.start()
    try:
        existing = {
            description["topic"]: len(description["partitions"])
            for description in await admin.describe_topics([spec.name for spec in specs])
            if description.get("error_code", 0) == 0
        }
        wrong = [
            f"{spec.name} has {existing[spec.name]} partitions, expected {spec.partitions}"
            for spec in specs
            if spec.name in existing and existing[spec.name] != spec.partitions
        ]
        if wrong:
            raise TopicLayoutError(
                "topics keyed by user must share one partition count (CLARION_PARTITIONS): "
                + "; ".join(wrong)
            )
        missing = [spec for spec in specs if spec.name not in existing]
        if missing:
            # Three copies where the cluster has three brokers, fewer on a small dev cluster.
            brokers = len((await admin.describe_cluster())["brokers"])
            replication = max(1, min(3, brokers))
            await admin.create_topics(
                [
                    NewTopic(
                        name=spec.name,
                        num_partitions=spec.partitions,
                        replication_factor=replication,
                        topic_configs=dict(spec.config),
                    )
                    for spec in missing
                ]
            )
            logger.info("created topics %s", ", ".join(spec.name for spec in missing))
            await _wait_for_leaders(admin, missing)
        return [spec.name for spec in missing]
    finally:
        await admin.close()


async def _wait_for_leaders(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    """Return once every partition of the new topics has a leader: a client that looks them up
    sooner can see 0 partitions (a Faust table then ignores its writes)."""
    deadline = time.monotonic() + _LEADER_WAIT_S
    while True:
        descriptions = await admin.describe_topics([spec.name for spec in specs])
        led = {
            d["topic"]: sum(1 for p in d["partitions"] if p.get("leader", -1) >= 0)
            for d in descriptions
            if d.get("error_code", 0) == 0
        }
        waiting = [spec.name for spec in specs if led.get(spec.name, 0) < spec.partitions]
        if not waiting:
            return
        if time.monotonic() > deadline:
            raise TopicLayoutError(f"no leader after {_LEADER_WAIT_S:.0f}s for {waiting}")
        await asyncio.sleep(0.1)  # polling interval of the deadline loop
