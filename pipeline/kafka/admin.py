"""Create Clarion's topics up front, with equal partition counts for everything user-keyed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

logger = logging.getLogger(__name__)


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
        return [spec.name for spec in missing]
    finally:
        await admin.close()
