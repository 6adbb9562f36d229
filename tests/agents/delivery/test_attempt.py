"""One delivery attempt: what it sends, announces and publishes, without a broker."""

from __future__ import annotations

import random
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agents.delivery.attempt import ChannelSender, ProviderSlot
from agents.delivery.breaker import CircuitBreaker
from agents.delivery.providers.base import SendResult, TransientDeliveryError
from agents.delivery.ratelimit import TokenBucket
from agents.records_out import OutputWriter
from schemas.structs import OutRecord
from schemas.topics import TopicNames

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
TOPICS = TopicNames(prefix="clarion.")


class ScriptedProvider:
    """Answers from a script: an exception to raise, or None for success."""

    name = "scripted"
    channel = "webhook"

    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.sent: list[Mapping[str, Any]] = []

    async def send(self, delivery: Mapping[str, Any]) -> SendResult:
        self.sent.append(delivery)
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer
        return SendResult(provider_message_id="m-1")

    async def close(self) -> None:
        return None


def sender(provider: ScriptedProvider, *, failures_to_open: int = 100) -> ChannelSender:
    breaker = CircuitBreaker(
        failure_threshold=failures_to_open, cooldown=30.0, max_cooldown=30.0, probe_timeout=60.0
    )
    slot = ProviderSlot(provider=provider, bucket=TokenBucket(None, 1), breaker=breaker)
    return ChannelSender(
        channel="webhook",
        primary=slot,
        fallback=None,
        writer=OutputWriter(topics=TOPICS, partitions=4),
        max_attempts=5,
        retry_backoff=10.0,
        clock=lambda: NOW,
        rng=random.Random(7),
    )


def delivery(**fields: Any) -> dict[str, Any]:
    return {
        "notification_id": "ntf_1",
        "user_id": "u1",
        "channel": "webhook",
        "address": "https://hooks.example.com/in",
        "subject": "Hello",
        "body": "Hi",
        "event_ids": ["e1"],
        "priority": "normal",
        "category": "billing",
        "created_at": "2026-11-24T09:59:00Z",
        "attempt": 1,
        "not_before": None,
        **fields,
    }


class Announcements:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def __call__(self, record: OutRecord) -> None:
        self.records.append(record)

    def statuses(self) -> list[str]:
        return [orjson.loads(r.value or b"")["status"] for r in self.records]


def decoded(records: list[OutRecord], topic: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value or b"") for r in records if r.topic == topic]


async def test_a_success_is_announced_as_sending_then_reported_sent() -> None:
    provider = ScriptedProvider(None)
    announce = Announcements()

    out = await sender(provider).attempt(delivery(), 2, announce)

    assert len(provider.sent) == 1
    assert announce.statuses() == ["sending"]
    assert [s["status"] for s in decoded(out, TOPICS.status)] == ["sent"]


async def test_an_open_circuit_defers_without_spending_an_attempt_or_announcing() -> None:
    provider = ScriptedProvider(TransientDeliveryError("HTTP 503", status=503))
    channel = sender(provider, failures_to_open=1)
    await channel.attempt(delivery(), 2)  # the failure that opens the breaker
    announce = Announcements()

    out = await channel.attempt(delivery(attempt=4), 2, announce)

    assert len(provider.sent) == 1
    assert announce.records == []
    (retry,) = decoded(out, TOPICS.retry)
    assert retry["attempt"] == 4
    waited = datetime.fromisoformat(retry["not_before"]) - NOW
    assert timedelta(seconds=29) <= waited <= timedelta(seconds=33.1)
    (status,) = decoded(out, TOPICS.status)
    assert status["status"] == "retrying"
    assert "circuit open" in status["reason"]
    assert decoded(out, TOPICS.dlq) == []


async def test_an_expired_delivery_is_dropped_with_status_expired() -> None:
    provider = ScriptedProvider(None)
    announce = Announcements()

    out = await sender(provider).attempt(
        delivery(attempt=3, expires_at="2026-11-24T10:00:00Z"), 2, announce
    )

    assert provider.sent == []
    assert announce.records == []
    (status,) = decoded(out, TOPICS.status)
    assert status["status"] == "expired"
    assert decoded(out, TOPICS.retry) == []


async def test_a_delivery_that_has_not_expired_yet_is_sent() -> None:
    provider = ScriptedProvider(None)

    out = await sender(provider).attempt(delivery(expires_at="2026-11-24T10:00:01Z"), 2)

    assert len(provider.sent) == 1
    assert [s["status"] for s in decoded(out, TOPICS.status)] == ["sent"]
