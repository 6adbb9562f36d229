"""A fake of FCM's HTTP v1 ``messages:send``, with FCM v1 error bodies."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from aiohttp import web

from agents.delivery.providers.config import DEV_FCM_PROJECT_ID, DEV_FCM_TOKEN
from pipeline.devsinks.http import Echo, HttpSink, quoted, recorded
from pipeline.devsinks.recording import Recorder

SEND_PATH = "/v1/projects/{project_id}/messages:send"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
# Real registration tokens are URL-safe base64 with a colon; anything else is "invalid".
_TOKEN = re.compile(r"^[A-Za-z0-9_:.-]+$")
_GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_FCM_ERROR_CODE = {
    400: "INVALID_ARGUMENT",
    401: "THIRD_PARTY_AUTH_ERROR",
    403: "SENDER_ID_MISMATCH",
    404: "UNREGISTERED",
    429: "QUOTA_EXCEEDED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def fcm_error(
    status: int, message: str, error_code: str | None, *extra_details: dict[str, Any]
) -> dict[str, Any]:
    details = [*extra_details]
    if error_code is not None:
        details.append({"@type": FCM_ERROR_TYPE, "errorCode": error_code})
    return {
        "error": {
            "code": status,
            "message": message,
            "status": _GRPC_STATUS.get(status, "UNKNOWN"),
            "details": details,
        }
    }


class FcmSink(HttpSink):
    """Accepts pushes for one project; tokens in ``unregistered`` get 404 UNREGISTERED."""

    label = "push"

    def __init__(
        self,
        *,
        project_id: str = DEV_FCM_PROJECT_ID,
        token: str = DEV_FCM_TOKEN,
        host: str = "127.0.0.1",
        port: int = 0,
        echo: Echo | None = None,
    ) -> None:
        super().__init__(host=host, port=port, echo=echo)
        self.project_id = project_id
        self.token = token
        self.unregistered: set[str] = set()
        self.messages: Recorder[dict[str, Any]] = Recorder()

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_control/unregistered", self._control_unregistered)
        app.router.add_post(SEND_PATH, self._send)

    def error_document(self, status: int, message: str) -> dict[str, Any]:
        # An injected 404 must not look like UNREGISTERED: that one has its own switch.
        code = None if status == 404 else _FCM_ERROR_CODE.get(status)
        return fcm_error(status, message, code)

    def reset_state(self) -> None:
        self.unregistered.clear()
        self.messages.clear()

    @staticmethod
    def _error(status: int, message: str, code: str | None, *extra: dict[str, Any]) -> web.Response:
        return web.json_response(fcm_error(status, message, code, *extra), status=status)

    async def _send(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, "Request had invalid authentication credentials.", None)
        project = request.match_info["project_id"]
        if project != self.project_id:
            return self._error(403, f"Permission denied on project {project}.", None)
        try:
            message = recorded(request).json()["message"]
            token = message["token"]
        except (ValueError, KeyError, TypeError):
            return self._error(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            violation = {
                "@type": BAD_REQUEST_TYPE,
                "fieldViolations": [
                    {"field": "message.token", "description": "Invalid registration token"}
                ],
            }
            return self._error(
                400,
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
                violation,
            )
        if token in self.unregistered:
            return self._error(404, "Requested entity was not found.", "UNREGISTERED")
        name = f"projects/{project}/messages/0:{time.time_ns() // 1000}%{secrets.token_hex(8)}"
        self.messages.append({"name": name, "message": message})
        notification = message.get("notification") or {}
        data = message.get("data") or {}
        self.say(
            f"token={token[:16]} title={quoted(notification.get('title', ''))} "
            f"body={quoted(notification.get('body', ''))} id={data.get('notification_id', '-')}"
        )
        return web.json_response({"name": name})

    async def _control_unregistered(self, request: web.Request) -> web.Response:
        document = await request.json()
        self.unregistered.update(str(token) for token in document.get("tokens", []))
        return web.json_response({"unregistered": sorted(self.unregistered)})
