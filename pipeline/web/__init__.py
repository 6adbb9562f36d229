"""The worker's HTTP API on Faust's web server: views, ingest, realtime, health, metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.app import Clarion


def register_web(clarion: Clarion) -> None:
    from pipeline.web.health import register_health  # noqa: PLC0415 - they import the app
    from pipeline.web.inbox_live import register_inbox_live  # noqa: PLC0415
    from pipeline.web.ingest import register_ingest_http  # noqa: PLC0415
    from pipeline.web.metrics import register_metrics  # noqa: PLC0415
    from pipeline.web.owners import Owners  # noqa: PLC0415
    from pipeline.web.views import register_views  # noqa: PLC0415

    async def authorize(web: Any, request: Any, scope: str) -> Any:  # noqa: ARG001
        return None

    owners = Owners(
        app=clarion.app,
        partitions=clarion.settings.partitions,
        table_topic=clarion.preferences_table.changelog_topic.get_topic_name(),
    )
    register_health(clarion)
    register_metrics(clarion)
    register_ingest_http(clarion)
    register_views(clarion, owners, authorize)
    register_inbox_live(clarion, owners, authorize)
