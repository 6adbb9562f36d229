"""Liveness and readiness: ``/health`` answers while the process runs, ``/ready`` when it can work.

Ready means: Faust's consumer has started, the broker answered a metadata request recently, no
rebalance is under way, Faust's table recovery has completed and the timers table holds every
assigned partition.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiokafka.client import AIOKafkaClient
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

from pipeline.roles import ROUTE
from pipeline.web.responses import json_response

if TYPE_CHECKING:
    from pipeline.app import Clarion

_BROKER_CHECK_TIMEOUT = 2.0
_BROKER_CHECK_TTL = 5.0


def register_health(clarion: Clarion) -> None:
    app = clarion.app
    last_broker_ok = 0.0

    client: AIOKafkaClient | None = None

    async def broker_reachable() -> bool:
        nonlocal last_broker_ok, client
        if time.monotonic() - last_broker_ok < _BROKER_CHECK_TTL:
            return True
        try:
            if client is None:
                client = AIOKafkaClient(bootstrap_servers=clarion.settings.bootstrap_servers)
                await asyncio.wait_for(client.bootstrap(), _BROKER_CHECK_TIMEOUT)
            await asyncio.wait_for(client.fetch_all_metadata(), _BROKER_CHECK_TIMEOUT)
        except Exception:  # noqa: BLE001 - any failure means not reachable
            if client is not None:
                await client.close()
                client = None
            return False
        last_broker_ok = time.monotonic()
        return True

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:  # noqa: ARG001
        return json_response(web, {"status": "ok"})

    def assignment() -> set[TP] | None:
        """The consumer's partitions; None until Faust has started the consumer, which it
        does after the web server (an early /ready is asked in between)."""
        try:
            return set(app.consumer.assignment())
        except ConsumerNotStarted:
            return None

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:  # noqa: ARG001
        tps = assignment()
        route = clarion.route
        routing = ROUTE in clarion.settings.roles
        checks = {
            "consumer_started": tps is not None and (route.started or not routing),
            "broker_reachable": await broker_reachable(),
            "assignment_settled": not app.rebalancing,
            "tables_recovered": app.tables.recovery.completed.is_set(),  # type: ignore[attr-defined]
            "timers_recovered": route.recovered or not routing,
        }
        body = {"ready": all(checks.values()), "checks": checks, "partitions": route.owned}
        return json_response(web, body, status=200 if body["ready"] else 503)
