"""Fake providers on free local ports, one fresh set per test, and sample deliveries."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from pipeline.devsinks.fcm import FcmSink
from pipeline.devsinks.smtp import SmtpSink
from pipeline.devsinks.twilio import TwilioSink
from pipeline.devsinks.webhook import WebhookSink

# Short enough to keep timeout tests fast, long enough for a loaded CI machine.
TEST_TIMEOUT = 1.0
FIXED_NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


def make_delivery(**fields: Any) -> dict[str, Any]:
    """A Delivery dict (schemas.records.Delivery fields) with overridable values."""
    base: dict[str, Any] = {
        "notification_id": "ntf_0123456789abcdef0123456789abcdef",
        "user_id": "alice",
        "channel": "email",
        "address": "alice@example.com",
        "subject": "Your invoice is ready",
        "body": "Invoice #42 is ready.\nThanks!",
        "html": "<p>Invoice <b>#42</b> is ready.</p>",
        "event_ids": ["evt-1"],
        "priority": "normal",
        "category": "billing",
        "created_at": "2026-01-01T00:00:00+00:00",
        "locale": "en",
        "tenant_id": "acme",
        "attempt": 1,
        "not_before": None,
    }
    base.update(fields)
    return base


@pytest.fixture
def delivery() -> Callable[..., dict[str, Any]]:
    return make_delivery


class StaticResolver(AbstractResolver):
    """DNS answers chosen by the test: host -> addresses."""

    def __init__(self, answers: Mapping[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in self.answers[host]
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    async with SmtpSink() as sink:
        yield sink


@pytest.fixture
async def twilio_sink() -> AsyncIterator[TwilioSink]:
    async with TwilioSink() as sink:
        yield sink


@pytest.fixture
async def fcm_sink() -> AsyncIterator[FcmSink]:
    async with FcmSink() as sink:
        yield sink


@pytest.fixture
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    async with WebhookSink(clock=lambda: FIXED_NOW) as sink:
        yield sink
