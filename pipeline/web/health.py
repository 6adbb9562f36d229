"""Liveness and readiness: ``/health`` answers while the process runs, ``/ready`` when it can work.

Ready means: the runtimes of this worker's roles have started, the broker answered a metadata
request recently, and the route runtime's state (timers, dedupe, preferences) and the store
runtime's (status histories, inboxes) are recovered for every partition assigned.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from aiokafka.client import AIOKafkaClient

from pipeline.roles import ROUTE, STORE
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

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:  # noqa: ARG001
        route, store = clarion.route, clarion.store
        roles = clarion.settings.roles
        routing, storing = ROUTE in roles, STORE in roles
        checks = {
            "consumer_started": (route.started or not routing) and (store.started or not storing),
            "broker_reachable": await broker_reachable(),
            "tables_recovered": store.recovered or not storing,
            "timers_recovered": route.recovered or not routing,
        }
        body = {
            "ready": all(checks.values()),
            "checks": checks,
            "partitions": route.owned,
            "store_partitions": store.owned,
        }
        return json_response(web, body, status=200 if body["ready"] else 503)
