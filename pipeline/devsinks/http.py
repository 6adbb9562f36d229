"""Base of the fake HTTP providers: serve, record every request, misbehave on demand.

Each fake listens on its own port and answers, besides its provider routes:

* ``GET  /_control/requests`` -> ``{"requests": [...]}`` (see ``RecordedRequest.to_json``)
* ``POST /_control/fail`` ``{"status": 503, "count": 2, "retry_after": "1"}``, or
  ``{"delay": 30}`` (slow answers) or ``{"refuse": true}`` (drop the connection):
  applies to the next ``count`` provider requests (default 1)
* ``POST /_control/reset`` forgets requests, pending faults and fake-specific state

so that tests driving a separate worker process can steer it as well as in-process
tests calling :meth:`HttpSink.fail_next` and friends.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from pipeline.devsinks.recording import (
    Fault,
    FaultQueue,
    RecordedRequest,
    Recorder,
    delay_unless,
)

Echo = Callable[[str], None]
CONTROL_PREFIX = "/_control/"
_RECORDED = web.RequestKey("recorded", RecordedRequest)
# How long stop() lets an in-flight answer finish; delays are cut short on stop anyway.
_SHUTDOWN_TIMEOUT = 1.0


def recorded(request: web.Request) -> RecordedRequest:
    """The recording of ``request`` made before the provider handler ran."""
    return request[_RECORDED]


class HttpSink:
    """Subclasses add provider routes in :meth:`add_routes` and shape errors in
    :meth:`error_document`."""

    label = "http"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, echo: Echo | None = None):
        self.host = host
        self._port = port
        self._echo = echo
        self.requests: Recorder[RecordedRequest] = Recorder()
        self.faults: FaultQueue[Fault] = FaultQueue()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._stopping = asyncio.Event()

    # --- provider-specific parts -------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def error_document(self, status: int, message: str) -> dict[str, Any]:
        """The provider's error body for an injected ``status``."""
        return {"error": message, "status": status}

    def reset_state(self) -> None:
        """Forget fake-specific state (e.g. unregistered tokens); called by reset()."""

    # --- lifecycle ------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}"

    async def start(self) -> Self:
        self._stopping = asyncio.Event()
        app = web.Application(middlewares=[self._record_and_misbehave])
        app.router.add_get(CONTROL_PREFIX + "requests", self._control_requests)
        app.router.add_post(CONTROL_PREFIX + "fail", self._control_fail)
        app.router.add_post(CONTROL_PREFIX + "reset", self._control_reset)
        self.add_routes(app)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await self._runner.setup()
        await self._listen()
        return self

    async def _listen(self) -> None:
        assert self._runner is not None, "start() first"
        self._site = web.TCPSite(
            self._runner,
            self.host,
            self._port,
            reuse_address=True,
        )
        await self._site.start()
        # Port 0 asks the OS for a free port; keep it so resume() listens there again.
        self._port = self._runner.addresses[0][1]

    async def pause(self) -> None:
        """Stop listening and drop open connections: clients get "connection refused"."""
        if self._site is None or self._runner is None:
            return
        await self._site.stop()
        self._site = None
        server = self._runner.server
        for connection in list(server.connections if server else ()):
            # Idle keep-alive connections would otherwise still be served.
            connection.force_close()

    async def resume(self) -> None:
        if self._site is None:
            await self._listen()

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # --- steering -------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int | None = None,
        delay: float = 0.0,
        refuse: bool = False,
        retry_after: str | float | None = None,
    ) -> None:
        """Misbehave for the next ``count`` provider requests (see :class:`Fault`)."""
        document = {"status": status, "delay": delay, "refuse": refuse, "retry_after": retry_after}
        self.faults.add(Fault.from_json(document), count)

    def reset(self) -> None:
        self.requests.clear()
        self.faults.clear()
        self.reset_state()

    def say(self, line: str) -> None:
        if self._echo is not None:
            self._echo(f"[{self.label}] {line}")

    # --- request pipeline -----------------------------------------------------------

    @web.middleware
    async def _record_and_misbehave(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        entry = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=await request.read(),
            received_at=time.time(),
        )
        self.requests.append(entry)
        request[_RECORDED] = entry
        fault = self.faults.take()
        if fault is None:
            return await handler(request)
        if fault.delay > 0:
            await delay_unless(self._stopping, fault.delay)
        if fault.refuse:
            return self._drop_connection(request)
        if fault.status is not None:
            return self._fault_response(fault.status, fault.retry_after)
        return await handler(request)

    def _drop_connection(self, request: web.Request) -> web.StreamResponse:
        if request.transport is not None:
            # abort() resets at once; close() would first flush, then end politely.
            request.transport.abort()
        return web.Response(status=499)  # never reaches the client

    def _fault_response(self, status: int, retry_after: str | None) -> web.Response:
        headers = {"Retry-After": retry_after} if retry_after is not None else None
        document = self.error_document(status, f"injected fault: HTTP {status}")
        return web.json_response(document, status=status, headers=headers)

    # --- control endpoints ----------------------------------------------------------

    async def _control_requests(self, _request: web.Request) -> web.Response:
        return web.json_response({"requests": [r.to_json() for r in self.requests.items]})

    async def _control_fail(self, request: web.Request) -> web.Response:
        try:
            document = await request.json()
            count = int(document.get("count", 1))
            self.faults.add(Fault.from_json(document), count)
        except (ValueError, TypeError, AttributeError) as exc:
            return web.json_response({"error": "bad fault", "detail": str(exc)}, status=400)
        return web.json_response({"pending": len(self.faults)})

    async def _control_reset(self, _request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})


def quoted(text: object, limit: int = 60) -> str:
    """A value for an echo line: one line, cut to ``limit`` characters, in quotes."""
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    return json.dumps(flat, ensure_ascii=False)
