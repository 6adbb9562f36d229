from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agents.delivery.providers.base import (
    InvalidAddressError,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from agents.delivery.providers.config import TwilioConfig
from agents.delivery.providers.twilio import TwilioProvider
from pipeline.devsinks.twilio import TwilioSink
from tests.agents.delivery.providers.conftest import TEST_TIMEOUT

Delivery = Callable[..., dict[str, Any]]
SID = "AC" + "0" * 32
PHONE = "+351910000000"


@pytest.fixture
async def provider(twilio_sink: TwilioSink) -> AsyncIterator[TwilioProvider]:
    provider = TwilioProvider(TwilioConfig(base_url=twilio_sink.url, timeout=TEST_TIMEOUT))
    yield provider
    await provider.close()


@pytest.fixture
def sms(delivery: Delivery) -> Delivery:
    def make(**fields: Any) -> dict[str, Any]:
        return delivery(**{"channel": "sms", "address": PHONE, "html": None, **fields})

    return make


async def test_sends_one_form_encoded_message(
    provider: TwilioProvider, twilio_sink: TwilioSink, sms: Delivery
) -> None:
    result = await provider.send(sms())

    [request] = twilio_sink.requests.items
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")
    assert request.form() == {
        "To": PHONE,
        "From": "+15005550006",
        "Body": "Invoice #42 is ready.\nThanks!",
    }
    scheme, _, credentials = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    assert base64.b64decode(credentials).decode() == f"{SID}:clarion-dev-token"
    assert request.headers["I-Twilio-Idempotency-Token"] == "ntf_0123456789abcdef0123456789abcdef"
    [message] = twilio_sink.messages.items
    assert result.provider_message_id == message["sid"]
    assert message["sid"].startswith("SM")
    assert len(message["sid"]) == 34
    assert message["status"] == "queued"


async def test_session_is_reused_across_sends(
    provider: TwilioProvider, twilio_sink: TwilioSink, sms: Delivery
) -> None:
    for n in range(3):
        await provider.send(sms(notification_id=f"ntf_{n}"))
    tokens = [r.headers["I-Twilio-Idempotency-Token"] for r in twilio_sink.requests.items]
    assert tokens == ["ntf_0", "ntf_1", "ntf_2"]


@pytest.mark.parametrize("number", ["5551234", "+0123456", "+1 555 0100", "+1234567890123456", ""])
async def test_non_e164_number_is_refused_before_any_request(
    provider: TwilioProvider, twilio_sink: TwilioSink, sms: Delivery, number: str
) -> None:
    with pytest.raises(InvalidAddressError) as caught:
        await provider.send(sms(address=number))
    assert caught.value.address == number
    assert len(twilio_sink.requests) == 0


async def test_twilio_21614_is_an_invalid_address(
    provider: TwilioProvider, twilio_sink: TwilioSink, sms: Delivery
) -> None:
    twilio_sink.landlines.add(PHONE)
    with pytest.raises(InvalidAddressError) as caught:
        await provider.send(sms())
    assert caught.value.address == PHONE
    assert "21614" in caught.value.reason


async def test_429_is_transient_with_retry_after(
    provider: TwilioProvider, twilio_sink: TwilioSink, sms: Delivery
) -> None:
    twilio_sink.fail_next(status=429, retry_after=7)
    with pytest.raises(TransientDeliveryError) as caught:
        await provider.send(sms())
    assert caught.value.status == 429
    assert caught.value.retry_after == 7.0

    await provider.send(sms())
    assert len(twilio_sink.requests) == 2
    assert len(twilio_sink.messages) == 1


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_transient(
    provider: TwilioProvider, twilio_sink: TwilioSink, sms: Delivery, status: int
) -> None:
    twilio_sink.fail_next(status=status)
    with pytest.raises(TransientDeliveryError) as caught:
        await provider.send(sms())
    assert caught.value.status == status
    assert caught.value.retry_after is None


async def test_400_is_permanent(
    provider: TwilioProvider, twilio_sink: TwilioSink, sms: Delivery
) -> None:
    twilio_sink.fail_next(status=400)
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(sms())
    assert not isinstance(caught.value, InvalidAddressError)
    assert caught.value.status == 400


async def test_wrong_credentials_are_permanent(twilio_sink: TwilioSink, sms: Delivery) -> None:
    provider = TwilioProvider(
        TwilioConfig(base_url=twilio_sink.url, auth_token="wrong", timeout=TEST_TIMEOUT)
    )
    try:
        with pytest.raises(PermanentDeliveryError) as caught:
            await provider.send(sms())
    finally:
        await provider.close()
    assert caught.value.status == 401
    assert "20003" in caught.value.reason


async def test_slow_answer_beyond_the_timeout_is_transient(
    twilio_sink: TwilioSink, sms: Delivery
) -> None:
    twilio_sink.fail_next(delay=30)
    provider = TwilioProvider(TwilioConfig(base_url=twilio_sink.url, timeout=0.3))
    try:
        with pytest.raises(TransientDeliveryError, match=r"no answer within 0\.3s"):
            await provider.send(sms())
    finally:
        await provider.close()


async def test_refused_connection_is_transient(
    provider: TwilioProvider, twilio_sink: TwilioSink, sms: Delivery
) -> None:
    await provider.send(sms())  # leaves a keep-alive connection in the pool
    await twilio_sink.pause()
    with pytest.raises(TransientDeliveryError):
        await provider.send(sms())

    await twilio_sink.resume()
    await provider.send(sms())
    assert len(twilio_sink.messages) == 2


async def test_dropped_connection_is_transient(
    provider: TwilioProvider, twilio_sink: TwilioSink, sms: Delivery
) -> None:
    twilio_sink.fail_next(refuse=True)
    with pytest.raises(TransientDeliveryError):
        await provider.send(sms())
    assert len(twilio_sink.requests) == 1
    assert len(twilio_sink.messages) == 0
