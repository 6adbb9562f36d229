"""The worker's HTTP API on Faust's web server: views, ingest, realtime, health, metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.app import Clarion


def register_web(clarion: Clarion) -> None:
    from pipeline.web.auth import api_keys_for  # noqa: PLC0415 - they import the app
    from pipeline.web.auth import authorize as check_key  # noqa: PLC0415
    from pipeline.web.health import register_health  # noqa: PLC0415
    from pipeline.web.inbox_live import register_inbox_live  # noqa: PLC0415
    from pipeline.web.ingest import register_ingest_http  # noqa: PLC0415
    from pipeline.web.metrics import register_metrics  # noqa: PLC0415
    from pipeline.web.openapi import register_openapi  # noqa: PLC0415
    from pipeline.web.owners import Owners  # noqa: PLC0415
    from pipeline.web.views import register_views  # noqa: PLC0415

    keys = api_keys_for(clarion)

    async def authorize(web: Any, request: Any, scope: str) -> Any:
        return await check_key(keys, web, request, scope)

    # Status histories and inboxes live in the store runtime's group.
    owners = Owners(source=clarion.store_owners, partitions=clarion.settings.partitions)
    # Preferences and timers live in the route runtime's group.
    user_state_owners = Owners(source=clarion.route_owners, partitions=clarion.settings.partitions)

    @clarion.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_owner_connections(_sender: Any, *_: Any, signal: Any, **__: Any) -> None:  # noqa: ARG001
        await owners.close()
        await user_state_owners.close()
        await clarion.route_owners.close()
        await clarion.store_owners.close()

    register_health(clarion)
    register_metrics(clarion)
    register_ingest_http(clarion)
    register_views(clarion, owners, user_state_owners, authorize)
    register_inbox_live(clarion, owners, authorize)
    register_openapi(clarion)
