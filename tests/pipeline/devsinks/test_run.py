"""All sinks together, reached by providers configured only from ``provider_env``."""

from __future__ import annotations

import pytest

from agents.delivery.providers import ProvidersConfig, build_providers, close_providers
from pipeline.devsinks.run import DevSinkPorts, start_dev_sinks


def delivery(channel: str, address: str) -> dict[str, object]:
    return {
        "notification_id": f"ntf_{channel}",
        "user_id": "alice",
        "channel": channel,
        "address": address,
        "subject": "Welcome",
        "body": "Hello Alice",
        "html": None,
        "event_ids": ["evt-1"],
        "priority": "normal",
        "category": "social",
        "created_at": "2026-01-01T00:00:00+00:00",
    }


async def test_providers_configured_from_provider_env_reach_every_sink() -> None:
    lines: list[str] = []
    sinks = await start_dev_sinks(ports=DevSinkPorts.ephemeral(), echo=lines.append)
    try:
        env = sinks.provider_env()
        providers = build_providers(ProvidersConfig.from_env(env))
        try:
            await providers["email"].send(delivery("email", "alice@example.com"))
            await providers["sms"].send(delivery("sms", "+351910000000"))
            await providers["push"].send(delivery("push", "tok-alice"))
            await providers["webhook"].send(delivery("webhook", sinks.webhook.hook_url("/alice")))
        finally:
            await close_providers(providers)
        assert len(sinks.smtp.messages) == 1
        assert len(sinks.twilio.messages) == 1
        assert len(sinks.fcm.messages) == 1
        assert len(sinks.webhook.requests) == 1
        assert set(sinks.addresses()) == {"smtp", "smtp_control", "twilio", "fcm", "webhook"}
    finally:
        await sinks.stop()

    assert lines == [
        '[email] to=alice@example.com subject="Welcome" id=ntf_email',
        '[sms] to=+351910000000 body="Hello Alice" id=ntf_sms',
        '[push] token=tok-alice title="Welcome" body="Hello Alice" id=ntf_push',
        '[webhook] path=/alice subject="Welcome" id=ntf_webhook signature=ok',
    ]


async def test_a_taken_port_stops_the_sinks_already_started() -> None:
    first = await start_dev_sinks(ports=DevSinkPorts.ephemeral(), echo=None)
    try:
        taken = DevSinkPorts(smtp=0, smtp_control=0, twilio=0, fcm=first.fcm.port, webhook=0)
        with pytest.raises(OSError, match="address already in use"):
            await start_dev_sinks(ports=taken, echo=None)
    finally:
        await first.stop()
