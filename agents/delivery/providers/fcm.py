"""Push channel through Firebase Cloud Messaging's HTTP v1 API.

``POST {base}/v1/projects/{project}/messages:send`` with ``Authorization: Bearer``.

FCM has no idempotency key: a retry after a lost answer can show the notification
twice. The notification id is sent in the message ``data`` so that the app can drop
a duplicate it has already displayed.

The bearer token is taken as configured (``CLARION_FCM_TOKEN``); minting OAuth
access tokens from a service account is outside this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from agents.delivery.providers.base import (
    DeliveryError,
    HttpClient,
    HttpReply,
    InvalidAddressError,
    PermanentDeliveryError,
    SendResult,
    UnregisteredTokenError,
    classify_http_status,
)
from agents.delivery.providers.config import FcmConfig

FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
TOKEN_FIELD = "message.token"  # noqa: S105 - a JSON field path


class FcmProvider:
    name = "fcm"
    channel = "push"

    def __init__(self, config: FcmConfig) -> None:
        self._url = f"{config.base_url}/v1/projects/{config.project_id}/messages:send"
        self._auth_header = f"Bearer {config.token}"
        self._client = HttpClient(timeout=config.timeout)

    @staticmethod
    def message(delivery: Mapping[str, Any]) -> dict[str, Any]:
        notification = {"body": str(delivery["body"])}
        if delivery.get("subject"):
            notification["title"] = str(delivery["subject"])
        return {
            "message": {
                "token": str(delivery["address"]),
                "notification": notification,
                # FCM data values must be strings.
                "data": {"notification_id": str(delivery["notification_id"])},
            }
        }

    async def send(self, delivery: Mapping[str, Any]) -> SendResult:
        token = str(delivery["address"])
        if not token.strip():
            raise InvalidAddressError(token, "empty push token")
        headers = {"Authorization": self._auth_header, "Content-Type": "application/json"}
        body = orjson.dumps(self.message(delivery))
        reply = await self._client.post(self._url, headers=headers, data=body)
        if reply.ok:
            document = reply.json()
            name = document.get("name") if isinstance(document, dict) else None
            return SendResult(provider_message_id=name if isinstance(name, str) else None)
        raise classify_fcm_error(token, reply)

    async def close(self) -> None:
        await self._client.close()


def classify_fcm_error(token: str, reply: HttpReply) -> DeliveryError:
    error = reply.json()
    error = error.get("error") if isinstance(error, dict) else None
    if not isinstance(error, dict):
        error = {}
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    codes = {d.get("errorCode") for d in details if d.get("@type") == FCM_ERROR_TYPE}
    message = str(error.get("message") or f"HTTP {reply.status}")
    reason = f"FCM {', '.join(sorted(map(str, codes))) or reply.status}: {message}"

    if "UNREGISTERED" in codes:
        return UnregisteredTokenError(token, reason, status=reply.status)
    if "SENDER_ID_MISMATCH" in codes:
        # The token belongs to another Firebase project: useless for this sender.
        return InvalidAddressError(token, reason, status=reply.status)
    if "INVALID_ARGUMENT" in codes:
        if _blames_token(details, message):
            return InvalidAddressError(token, reason, status=reply.status)
        # Something else in the payload: a bug on our side, not the user's token.
        return PermanentDeliveryError(reason, status=reply.status)
    generic = classify_http_status(reply.status, reply.headers, reply.text)
    assert generic is not None  # only called for non-2xx answers
    return generic


def _blames_token(details: list[dict[str, Any]], message: str) -> bool:
    for detail in details:
        if detail.get("@type") != BAD_REQUEST_TYPE:
            continue
        violations = detail.get("fieldViolations") or []
        if any(isinstance(v, dict) and v.get("field") == TOKEN_FIELD for v in violations):
            return True
    # FCM often only says so in the message: "The registration token is not a valid ...".
    return "registration token" in message.lower()
