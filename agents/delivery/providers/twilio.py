"""SMS channel through Twilio's Programmable Messaging REST API (2010-04-01).

``POST {base}/2010-04-01/Accounts/{sid}/Messages.json``, form-encoded To/From/Body,
HTTP basic auth with the account sid and auth token. The notification id goes in the
``I-Twilio-Idempotency-Token`` header so that a retried request can be recognised.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import aiohttp

from agents.delivery.providers.base import (
    DeliveryError,
    HttpClient,
    HttpReply,
    InvalidAddressError,
    SendResult,
    classify_http_status,
)
from agents.delivery.providers.config import TwilioConfig

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
# Twilio error codes that mean the 'To' number itself is wrong:
# 21211 invalid 'To' phone number, 21614 'To' number is not a mobile number.
INVALID_TO_CODES = frozenset({21211, 21614})


def is_e164(number: str) -> bool:
    return E164.fullmatch(number) is not None


class TwilioProvider:
    name = "twilio"
    channel = "sms"

    def __init__(self, config: TwilioConfig) -> None:
        self._config = config
        self._url = f"{config.base_url}/2010-04-01/Accounts/{config.account_sid}/Messages.json"
        self._authorization = aiohttp.encode_basic_auth(config.account_sid, config.auth_token)
        self._client = HttpClient(timeout=config.timeout)

    async def send(self, delivery: Mapping[str, Any]) -> SendResult:
        to = str(delivery["address"])
        if not is_e164(to):
            # Checked locally: Twilio would refuse it too, and charge a request for it.
            raise InvalidAddressError(to, f"{to!r} is not an E.164 phone number")
        form = {"To": to, "From": self._config.sender, "Body": str(delivery["body"])}
        headers = {
            "Authorization": self._authorization,
            IDEMPOTENCY_HEADER: str(delivery["notification_id"]),
        }
        reply = await self._client.post(self._url, headers=headers, data=form)
        if reply.ok:
            # The message is accepted even if the body is odd: raising here would
            # make the agent retry, and send the SMS twice.
            document = reply.json()
            sid = document.get("sid") if isinstance(document, dict) else None
            return SendResult(provider_message_id=sid if isinstance(sid, str) else None)
        raise classify_twilio_error(to, reply)

    async def close(self) -> None:
        await self._client.close()


def classify_twilio_error(to: str, reply: HttpReply) -> DeliveryError:
    document = reply.json()
    if isinstance(document, dict) and document.get("code") in INVALID_TO_CODES:
        message = document.get("message") or "invalid 'To' number"
        return InvalidAddressError(to, f"Twilio {document['code']}: {message}", status=reply.status)
    error = classify_http_status(reply.status, reply.headers, reply.text)
    assert error is not None  # only called for non-2xx answers
    return error
