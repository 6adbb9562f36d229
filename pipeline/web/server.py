"""The worker's aiohttp server as Clarion runs it: only Clarion's routes, bounded bodies, quiet
about garbage.

Everything about Faust's web server that is not a view lives here:

* **Faust's built-in views are off.** Faust serves ``/table/...`` (any table's rows: the
  preferences with their push tokens), ``/router/...`` (the cluster layout), statistics,
  ``/graph`` and ``/`` with no notion of Clarion's API keys. The flagged ones are turned off
  with Faust's settings (:data:`FAUST_WEB_SETTINGS`); the production index at ``/`` has no
  setting and is dropped by :class:`ClarionWeb`. Clarion routes between workers itself
  (:mod:`pipeline.web.owners`), so nothing needs ``/router``. tests/pipeline/web/
  test_web_server.py lists every route of the server and the scope each one needs.
* **Request bodies stop at** ``CLARION_MAX_REQUEST_BYTES`` (aiohttp's ``client_max_size``);
  beyond it the answer is 413 in the contract's error shape instead of aiohttp's text.
* **Requests aiohttp cannot parse** (over-long lines, NUL bytes, bad framing) are logged as one
  WARNING line: aiohttp logs them at ERROR with a traceback, which lets any unauthenticated
  client fill the log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from faust.web.drivers.aiohttp import Web

from pipeline.settings import Settings

__all__ = [
    "FAUST_WEB_SETTINGS",
    "ClarionWeb",
    "MalformedRequestFilter",
    "faust_web_options",
]

# Every built-in Faust view that has a setting of its own, off.
FAUST_WEB_SETTINGS: Mapping[str, bool] = {
    "web_tables_enabled": False,
    "web_router_enabled": False,
    "web_stats_enabled": False,
    "web_graph_enabled": False,
    "web_metrics_enabled": False,
}

# How much of aiohttp's description of a malformed request is logged.
_SUMMARY_CHARS = 120


def faust_web_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments of ``faust.App`` for Clarion's web server."""
    return {
        **FAUST_WEB_SETTINGS,
        "web_application_options": {
            "client_max_size": settings.max_request_bytes,
            "middlewares": [_too_large_as_json(settings.max_request_bytes)],
        },
    }


class ClarionWeb(Web):
    """Faust's aiohttp driver without the production index: ``GET /`` is not Clarion's.

    Install it right after creating the app, before any view is added: ``app.web =
    ClarionWeb(app)``.
    """

    # Faust adds this blueprint whenever its statistics are off, with no setting to stop it.
    production_blueprints: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        MalformedRequestFilter.install()


def _too_large_as_json(limit: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def too_large_as_json(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            # Raised by request.read() and friends past client_max_size.
            return web.Response(
                body=orjson.dumps(
                    {
                        "error": "body too large",
                        "detail": f"at most {limit} bytes per request (CLARION_MAX_REQUEST_BYTES)",
                    }
                ),
                status=413,
                content_type="application/json",
            )

    return too_large_as_json


class MalformedRequestFilter(logging.Filter):
    """Turn aiohttp's ERROR-with-traceback about an unparsable request into one WARNING line.

    aiohttp's ``RequestHandler.handle_error`` logs ``Error handling request from %s`` with the
    parser's exception (an ``HttpProcessingError``) through ``log_exception``; only that record
    is rewritten. Errors raised by a handler are left as they are.
    """

    LOGGER = "aiohttp.server"

    @classmethod
    def install(cls) -> None:
        logger = logging.getLogger(cls.LOGGER)
        if not any(isinstance(existing, cls) for existing in logger.filters):
            logger.addFilter(cls())

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and record.levelno >= logging.ERROR:
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "Refused a malformed HTTP request from %s: %s"
            record.args = (remote, _summary(exc))
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _summary(exc: HttpProcessingError) -> str:
    """The first line of the parser's reason, short and with any control character escaped:
    the rest repeats the client's bytes."""
    lines = str(exc.message).splitlines() or [type(exc).__name__]
    reason = lines[0][:_SUMMARY_CHARS]
    return f"{exc.code} {type(exc).__name__}: {reason.encode('unicode_escape').decode('ascii')}"
