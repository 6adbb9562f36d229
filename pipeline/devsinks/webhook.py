"""A webhook receiver that checks Standard Webhooks signatures, on any path.

Answers 204 to a valid signature and 401 to anything else; both are recorded, so a
test can see what was sent even when the signature is wrong.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from agents.delivery.providers.config import DEV_WEBHOOK_SECRET
from agents.delivery.providers.webhook import DEFAULT_TOLERANCE, verify
from pipeline.devsinks.http import Echo, HttpSink, quoted, recorded
from pipeline.devsinks.recording import RecordedRequest


class WebhookSink(HttpSink):
    label = "webhook"

    def __init__(
        self,
        *,
        secret: str = DEV_WEBHOOK_SECRET,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        echo: Echo | None = None,
    ) -> None:
        super().__init__(host=host, port=port, echo=echo)
        self.secret = secret
        self._clock = clock

    def hook_url(self, path: str = "/hooks") -> str:
        """A URL to put in a user's ``addresses.webhook_url``."""
        return self.url + "/" + path.lstrip("/")

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._receive)

    def is_signed(self, request: RecordedRequest) -> bool:
        headers = request.headers
        msg_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signature = headers.get("webhook-signature")
        if not (msg_id and timestamp and signature):
            return False
        return verify(
            self.secret,
            msg_id,
            timestamp,
            request.body,
            signature,
            now=self._clock(),
            tolerance=DEFAULT_TOLERANCE,
        )

    async def _receive(self, request: web.Request) -> web.Response:
        entry = recorded(request)
        msg_id = entry.headers.get("webhook-id", "-")
        if not self.is_signed(entry):
            self.say(f"path={entry.path} id={msg_id} signature=INVALID (answered 401)")
            return web.json_response({"error": "invalid webhook signature"}, status=401)
        try:
            document = entry.json()
        except ValueError:
            document = {}
        subject = document.get("subject") if isinstance(document, dict) else None
        self.say(f"path={entry.path} subject={quoted(subject or '')} id={msg_id} signature=ok")
        return web.Response(status=204)
