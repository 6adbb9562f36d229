from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from agents.delivery.providers.base import (
    HttpReply,
    InvalidAddressError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnregisteredTokenError,
)
from agents.delivery.providers.config import FcmConfig
from agents.delivery.providers.fcm import FcmProvider, classify_fcm_error
from pipeline.devsinks.fcm import FcmSink, fcm_error
from tests.agents.delivery.providers.conftest import TEST_TIMEOUT

Delivery = Callable[..., dict[str, Any]]
TOKEN = "fGx4c2V0dG9rZW4:APA91bHunvR3ZMgLmTx1-example"


@pytest.fixture
async def provider(fcm_sink: FcmSink) -> AsyncIterator[FcmProvider]:
    provider = FcmProvider(FcmConfig(base_url=fcm_sink.url, timeout=TEST_TIMEOUT))
    yield provider
    await provider.close()


@pytest.fixture
def push(delivery: Delivery) -> Delivery:
    def make(**fields: Any) -> dict[str, Any]:
        return delivery(**{"channel": "push", "address": TOKEN, "html": None, **fields})

    return make


async def test_sends_one_v1_message(
    provider: FcmProvider, fcm_sink: FcmSink, push: Delivery
) -> None:
    result = await provider.send(push())

    [request] = fcm_sink.requests.items
    assert request.path == "/v1/projects/clarion-dev/messages:send"
    assert request.headers["Authorization"] == "Bearer clarion-dev-fcm-token"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json() == {
        "message": {
            "token": TOKEN,
            "notification": {
                "title": "Your invoice is ready",
                "body": "Invoice #42 is ready.\nThanks!",
            },
            "data": {"notification_id": "ntf_0123456789abcdef0123456789abcdef"},
        }
    }
    [accepted] = fcm_sink.messages.items
    assert result.provider_message_id == accepted["name"]
    assert accepted["name"].startswith("projects/clarion-dev/messages/")


async def test_no_title_without_a_subject(
    provider: FcmProvider, fcm_sink: FcmSink, push: Delivery
) -> None:
    await provider.send(push(subject=None))
    [request] = fcm_sink.requests.items
    assert request.json()["message"]["notification"] == {"body": "Invoice #42 is ready.\nThanks!"}


async def test_unregistered_token(provider: FcmProvider, fcm_sink: FcmSink, push: Delivery) -> None:
    fcm_sink.unregistered.add(TOKEN)
    with pytest.raises(UnregisteredTokenError) as caught:
        await provider.send(push())
    assert caught.value.address == TOKEN
    assert caught.value.status == 404
    assert "UNREGISTERED" in caught.value.reason


async def test_malformed_token_is_invalid_but_not_unregistered(
    provider: FcmProvider, push: Delivery
) -> None:
    with pytest.raises(InvalidAddressError) as caught:
        await provider.send(push(address="not a token"))
    assert not isinstance(caught.value, UnregisteredTokenError)
    assert caught.value.status == 400


async def test_empty_token_is_refused_before_any_request(
    provider: FcmProvider, fcm_sink: FcmSink, push: Delivery
) -> None:
    with pytest.raises(InvalidAddressError):
        await provider.send(push(address=""))
    assert len(fcm_sink.requests) == 0


async def test_429_is_transient_with_retry_after(
    provider: FcmProvider, fcm_sink: FcmSink, push: Delivery
) -> None:
    fcm_sink.fail_next(status=429, retry_after=30)
    with pytest.raises(TransientDeliveryError) as caught:
        await provider.send(push())
    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_transient(
    provider: FcmProvider, fcm_sink: FcmSink, push: Delivery, status: int
) -> None:
    fcm_sink.fail_next(status=status)
    with pytest.raises(TransientDeliveryError):
        await provider.send(push())


async def test_invalid_argument_about_the_payload_is_permanent_not_the_token(
    provider: FcmProvider, fcm_sink: FcmSink, push: Delivery
) -> None:
    fcm_sink.fail_next(status=400)
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push())
    assert not isinstance(caught.value, InvalidAddressError)


async def test_404_without_unregistered_does_not_blame_the_token(
    provider: FcmProvider, fcm_sink: FcmSink, push: Delivery
) -> None:
    # E.g. a wrong project id: dropping users' tokens over it would lose them all.
    fcm_sink.fail_next(status=404)
    with pytest.raises(PermanentDeliveryError) as caught:
        await provider.send(push())
    assert not isinstance(caught.value, InvalidAddressError)


async def test_wrong_bearer_token_is_permanent(fcm_sink: FcmSink, push: Delivery) -> None:
    provider = FcmProvider(FcmConfig(base_url=fcm_sink.url, token="expired", timeout=TEST_TIMEOUT))
    try:
        with pytest.raises(PermanentDeliveryError) as caught:
            await provider.send(push())
    finally:
        await provider.close()
    assert caught.value.status == 401


def reply(status: int, document: dict[str, Any]) -> HttpReply:
    return HttpReply(
        status=status, headers=CIMultiDictProxy(CIMultiDict()), text=json.dumps(document)
    )


@pytest.mark.parametrize(
    ("status", "document", "expected"),
    [
        (
            400,
            fcm_error(400, "Requested entity was not found.", "UNREGISTERED"),
            UnregisteredTokenError,
        ),
        (403, fcm_error(403, "SenderId mismatch", "SENDER_ID_MISMATCH"), InvalidAddressError),
        (
            400,
            fcm_error(
                400,
                "The registration token is not a valid FCM registration token",
                "INVALID_ARGUMENT",
            ),
            InvalidAddressError,
        ),
        (
            400,
            fcm_error(400, "Invalid value at 'message.data'", "INVALID_ARGUMENT"),
            PermanentDeliveryError,
        ),
        (
            503,
            fcm_error(503, "The service is currently unavailable.", "UNAVAILABLE"),
            TransientDeliveryError,
        ),
        (502, {"unexpected": "proxy page"}, TransientDeliveryError),
    ],
)
def test_fcm_v1_error_bodies(
    status: int, document: dict[str, Any], expected: type[Exception]
) -> None:
    error = classify_fcm_error(TOKEN, reply(status, document))
    assert type(error) is expected


async def test_slow_answer_beyond_the_timeout_is_transient(
    fcm_sink: FcmSink, push: Delivery
) -> None:
    fcm_sink.fail_next(delay=30)
    provider = FcmProvider(FcmConfig(base_url=fcm_sink.url, timeout=0.3))
    try:
        with pytest.raises(TransientDeliveryError):
            await provider.send(push())
    finally:
        await provider.close()


async def test_refused_connection_is_transient(
    provider: FcmProvider, fcm_sink: FcmSink, push: Delivery
) -> None:
    await fcm_sink.pause()
    with pytest.raises(TransientDeliveryError, match="cannot connect"):
        await provider.send(push())
