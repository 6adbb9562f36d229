"""The fakes' own behaviour, driven over HTTP as a test of a worker process would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from agents.delivery.providers.config import DEV_WEBHOOK_SECRET
from agents.delivery.providers.webhook import sign
from pipeline.devsinks.fcm import FcmSink
from pipeline.devsinks.recording import Fault, RecordedRequest, Recorder
from pipeline.devsinks.twilio import TwilioSink
from pipeline.devsinks.webhook import WebhookSink

SID = "AC" + "0" * 32
TWILIO_AUTH = aiohttp.encode_basic_auth(SID, "clarion-dev-token")
MESSAGES = f"/2010-04-01/Accounts/{SID}/Messages.json"
SMS_FORM = {"To": "+351910000000", "From": "+15005550006", "Body": "hi"}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioSink]:
    async with TwilioSink() as sink:
        yield sink


async def post_json(http: aiohttp.ClientSession, url: str, document: Any) -> tuple[int, Any]:
    async with http.post(url, json=document) as response:
        return response.status, await response.json()


async def send_sms(http: aiohttp.ClientSession, sink: TwilioSink, **headers: str) -> int:
    async with http.post(
        sink.url + MESSAGES, data=SMS_FORM, headers={"Authorization": TWILIO_AUTH, **headers}
    ) as response:
        return response.status


async def test_control_endpoints_inject_faults_and_list_requests(
    http: aiohttp.ClientSession, twilio: TwilioSink
) -> None:
    status, answer = await post_json(
        http, twilio.url + "/_control/fail", {"status": 503, "count": 2, "retry_after": 3}
    )
    assert (status, answer) == (200, {"pending": 2})

    async with http.post(
        twilio.url + MESSAGES, data=SMS_FORM, headers={"Authorization": TWILIO_AUTH}
    ) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "3"
        assert (await response.json())["code"] == 20503
    assert await send_sms(http, twilio) == 503
    assert await send_sms(http, twilio) == 201

    async with http.get(twilio.url + "/_control/requests") as response:
        listed = (await response.json())["requests"]
    assert [r["path"] for r in listed] == [MESSAGES] * 3
    first = RecordedRequest.from_json(listed[0])
    assert first.form() == SMS_FORM
    assert first.headers["authorization"] == TWILIO_AUTH
    assert first.received_at <= RecordedRequest.from_json(listed[2]).received_at

    status, _ = await post_json(http, twilio.url + "/_control/reset", {})
    assert status == 200
    assert len(twilio.requests) == 0
    assert len(twilio.messages) == 0


@pytest.mark.parametrize(
    "document", [{"count": 1}, {"status": 500, "count": 0}, {"delay": "slow"}, ["status"]]
)
async def test_bad_faults_are_answered_400(
    http: aiohttp.ClientSession, twilio: TwilioSink, document: Any
) -> None:
    status, answer = await post_json(http, twilio.url + "/_control/fail", document)
    assert status == 400
    assert answer["error"] == "bad fault"
    assert len(twilio.faults) == 0


async def test_delay_alone_answers_normally_but_late(
    http: aiohttp.ClientSession, twilio: TwilioSink
) -> None:
    twilio.fail_next(delay=0.2)
    started = asyncio.get_running_loop().time()
    assert await send_sms(http, twilio) == 201
    assert asyncio.get_running_loop().time() - started >= 0.2


async def test_twilio_checks_credentials_account_and_fields(
    http: aiohttp.ClientSession, twilio: TwilioSink
) -> None:
    async with http.post(twilio.url + MESSAGES, data=SMS_FORM) as response:
        assert response.status == 401
        assert (await response.json())["code"] == 20003
    other = MESSAGES.replace(SID, "AC" + "1" * 32)
    async with http.post(
        twilio.url + other, data=SMS_FORM, headers={"Authorization": TWILIO_AUTH}
    ) as response:
        assert response.status == 404
    for missing, code in (("To", 21604), ("From", 21603), ("Body", 21602)):
        form = {k: v for k, v in SMS_FORM.items() if k != missing}
        async with http.post(
            twilio.url + MESSAGES, data=form, headers={"Authorization": TWILIO_AUTH}
        ) as response:
            assert response.status == 400
            assert (await response.json())["code"] == code
    async with http.post(
        twilio.url + MESSAGES,
        data={**SMS_FORM, "To": "12345"},
        headers={"Authorization": TWILIO_AUTH},
    ) as response:
        assert (await response.json())["code"] == 21211
    assert len(twilio.messages) == 0
    assert len(twilio.requests) == 6


async def test_twilio_landlines_over_control(
    http: aiohttp.ClientSession, twilio: TwilioSink
) -> None:
    await post_json(http, twilio.url + "/_control/landlines", {"numbers": [SMS_FORM["To"]]})
    assert await send_sms(http, twilio) == 400


async def test_fcm_checks_bearer_project_and_unregistered_tokens(
    http: aiohttp.ClientSession,
) -> None:
    async with FcmSink() as fcm:
        url = fcm.url + "/v1/projects/clarion-dev/messages:send"
        message = {"message": {"token": "tok-1", "notification": {"body": "hi"}}}
        bearer = {"Authorization": "Bearer clarion-dev-fcm-token"}
        async with http.post(url, json=message) as response:
            assert response.status == 401
            assert (await response.json())["error"]["status"] == "UNAUTHENTICATED"
        async with http.post(
            url.replace("clarion-dev", "other"), json=message, headers=bearer
        ) as response:
            assert response.status == 403

        await post_json(http, fcm.url + "/_control/unregistered", {"tokens": ["tok-1"]})
        async with http.post(url, json=message, headers=bearer) as response:
            assert response.status == 404
            error = (await response.json())["error"]
        assert error["details"] == [
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": "UNREGISTERED",
            }
        ]

        fcm.reset()
        async with http.post(url, json=message, headers=bearer) as response:
            assert response.status == 200
            name = (await response.json())["name"]
        assert name.startswith("projects/clarion-dev/messages/")
        assert fcm.messages.items == [{"name": name, "message": message["message"]}]


async def test_webhook_receiver_accepts_only_valid_signatures(
    http: aiohttp.ClientSession,
) -> None:
    lines: list[str] = []
    async with WebhookSink(clock=lambda: 1_700_000_000, echo=lines.append) as hooks:
        body = b'{"subject":"Hello"}'
        headers = {
            "webhook-id": "ntf_1",
            "webhook-timestamp": "1700000000",
            "webhook-signature": sign(DEV_WEBHOOK_SECRET, "ntf_1", 1_700_000_000, body),
        }
        async with http.post(hooks.hook_url("/a"), data=body, headers=headers) as response:
            assert response.status == 204
        async with http.post(hooks.hook_url("/a"), data=body + b" ", headers=headers) as response:
            assert response.status == 401
        async with http.post(hooks.hook_url("/b"), data=body) as response:
            assert response.status == 401
        stale = {**headers, "webhook-timestamp": "1699990000"}
        async with http.post(hooks.hook_url("/a"), data=body, headers=stale) as response:
            assert response.status == 401
    assert len(hooks.requests) == 4
    assert lines[0] == '[webhook] path=/a subject="Hello" id=ntf_1 signature=ok'
    assert all("signature=INVALID" in line for line in lines[1:])


async def test_recorder_waits_for_arrivals_and_times_out_clearly() -> None:
    recorder: Recorder[int] = Recorder()
    waiting = asyncio.create_task(recorder.wait_for(2))
    # Scheduled after the task's first step: the items arrive while it is waiting.
    loop = asyncio.get_running_loop()
    loop.call_soon(recorder.append, 1)
    loop.call_soon(recorder.append, 2)
    assert await waiting == [1, 2]
    with pytest.raises(TimeoutError, match="expected 3 item"):
        await recorder.wait_for(3, within=0.05)


def test_fault_needs_something_to_do() -> None:
    with pytest.raises(ValueError, match="needs"):
        Fault.from_json({})
    assert Fault.from_json({"refuse": True}).refuse


async def test_pause_refuses_connections_and_resume_listens_on_the_same_port(
    http: aiohttp.ClientSession, twilio: TwilioSink
) -> None:
    port = twilio.port
    await twilio.pause()
    with pytest.raises(aiohttp.ClientConnectorError):
        await send_sms(http, twilio)
    await twilio.resume()
    assert twilio.port == port
    assert await send_sms(http, twilio) == 201
