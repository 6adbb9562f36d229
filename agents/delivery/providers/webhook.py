"""Webhook channel: a signed JSON POST to the user's URL, per Standard Webhooks 1.0.

https://www.standardwebhooks.com: ``webhook-id`` is the notification id (the same on
every retry, so receivers can deduplicate), ``webhook-timestamp`` the unix seconds of
this attempt and ``webhook-signature`` ``v1,`` + base64(HMAC-SHA256(key,
"{id}.{timestamp}.{body}")) with key = base64-decoded part of the ``whsec_`` secret.

Redirects are not followed and every destination passes the SSRF guard (``ssrf``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from aiohttp.abc import AbstractResolver

from agents.delivery.providers.base import (
    HttpClient,
    SendResult,
    classify_http_status,
)
from agents.delivery.providers.config import WebhookConfig, decode_webhook_secret
from agents.delivery.providers.ssrf import guarded_connector, vet_url

# What a receiver sees of a Delivery; the address (its own URL) and internals stay out.
PUBLIC_FIELDS: tuple[str, ...] = (
    "notification_id",
    "user_id",
    "channel",
    "subject",
    "body",
    "event_ids",
    "priority",
    "category",
    "created_at",
    "tenant_id",
)
# The spec's recommended tolerance against replayed deliveries.
DEFAULT_TOLERANCE = 300.0
SIGNATURE_VERSION = "v1"


def _signature_bytes(key: bytes, msg_id: str, timestamp: int | str, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``webhook-signature`` value for one message, e.g. ``v1,g0hM9S…=``."""
    digest = _signature_bytes(decode_webhook_secret(secret), msg_id, timestamp, _as_bytes(body))
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def verify(
    secret: str,
    msg_id: str,
    timestamp: str | int,
    body: bytes | str,
    signature_header: str,
    *,
    now: float | None = None,
    tolerance: float | None = DEFAULT_TOLERANCE,
) -> bool:
    """Whether any signature in the (space-separated) header matches, in constant time.

    ``body`` must be the raw bytes received. A timestamp further than ``tolerance``
    seconds from ``now`` fails too; ``tolerance=None`` skips that check (test vectors).
    """
    try:
        seconds = int(timestamp)
    except ValueError:
        return False
    if tolerance is not None:
        current = time.time() if now is None else now
        if abs(current - seconds) > tolerance:
            return False
    expected = _signature_bytes(decode_webhook_secret(secret), msg_id, seconds, _as_bytes(body))
    matched = False
    for candidate in signature_header.split():
        version, _, encoded = candidate.partition(",")
        if version != SIGNATURE_VERSION:
            continue  # future schemes (e.g. v1a asymmetric) may sit beside v1
        try:
            given = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        # No early exit: every candidate costs the same, whichever one matches.
        matched |= hmac.compare_digest(expected, given)
    return matched


def webhook_payload(delivery: Mapping[str, Any]) -> bytes:
    """The exact bytes sent and signed: compact JSON of the public fields."""
    return orjson.dumps({name: delivery.get(name) for name in PUBLIC_FIELDS})


class WebhookProvider:
    """POSTs signed JSON to ``delivery["address"]``; the SSRF guard vets every destination."""

    name = "webhook"
    channel = "webhook"

    def __init__(
        self,
        config: WebhookConfig,
        *,
        clock: Callable[[], float] = time.time,
        resolver: AbstractResolver | None = None,
    ) -> None:
        """``clock`` stamps ``webhook-timestamp``; ``resolver`` replaces DNS (tests)."""
        self._config = config
        self._clock = clock
        self._client = HttpClient(
            timeout=config.timeout,
            connector_factory=lambda: guarded_connector(config.allowlist, resolver=resolver),
            user_agent="Clarion-Webhooks/0.1",
        )

    async def send(self, delivery: Mapping[str, Any]) -> SendResult:
        url = vet_url(str(delivery["address"]), self._config.allowlist)
        msg_id = str(delivery["notification_id"])
        timestamp = int(self._clock())
        body = webhook_payload(delivery)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._config.secret, msg_id, timestamp, body),
        }
        reply = await self._client.post(url, headers=headers, data=body)
        error = classify_http_status(reply.status, reply.headers, reply.text)
        if error is not None:
            raise error
        return SendResult(provider_message_id=msg_id)

    async def close(self) -> None:
        await self._client.close()
