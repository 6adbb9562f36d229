"""HTTP endpoints served by each worker's Faust web server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from pipeline.app import Clarion


def _error(web: Any, status: int, error: str, detail: object = None) -> Any:
    return web.bytes(
        orjson.dumps({"error": error, "detail": detail}),
        content_type="application/json",
        status=status,
    )


def register_web(clarion: Clarion) -> None:
    app = clarion.app
    preferences = clarion.preferences_table

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:  # noqa: ARG001
        return web.json({"status": "ok"})

    @app.page("/users/{user_id}/preferences")
    async def user_preferences(web: Any, request: Any, user_id: str) -> Any:  # noqa: ARG001
        # Answered from this worker's partitions; routing to the owner comes with the web issue.
        found = preferences.get(user_id)
        if found is None:
            return _error(web, 404, "not found", f"no preferences for user {user_id!r}")
        return web.bytes(
            orjson.dumps(
                found.asdict()
                | {
                    "addresses": found.addresses.asdict() if found.addresses else None,
                    "quiet_hours": found.quiet_hours.asdict() if found.quiet_hours else None,
                    "digest": found.digest.asdict() if found.digest else None,
                }
            ),
            content_type="application/json",
        )
