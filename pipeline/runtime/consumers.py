"""How the batch runtime's consumers join their groups and read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer


def heartbeat_interval(session_timeout: float) -> float:
    """A quarter of the session, as Kafka advises, but never more than 3 s."""
    return min(3.0, session_timeout / 4)


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsumerConfig:
    bootstrap_servers: str
    group_id: str
    client_id: str
    session_timeout: float
    max_records: int
    options: Mapping[str, Any] = field(default_factory=dict)

    def consumer(self, **overrides: Any) -> AIOKafkaConsumer:
        """Offsets are committed by the runtime (never automatically), and only what
        producers committed is read: outputs of aborted transactions never count."""
        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "group_id": self.group_id,
            "client_id": self.client_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "isolation_level": "read_committed",
            "session_timeout_ms": int(self.session_timeout * 1000),
            "heartbeat_interval_ms": int(heartbeat_interval(self.session_timeout) * 1000),
            "max_poll_records": self.max_records,
            **self.options,
            **overrides,
        }
        return AIOKafkaConsumer(**settings)
