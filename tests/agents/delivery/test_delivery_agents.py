"""The delivery agents through a real broker, a real worker process and the fake providers.

What is asserted is what reached the fake providers (how, and how often) and what the worker
published: statuses, retry records, dead letters, preferences updates. The sinks run in this
process's event loop, so nothing here blocks it: waits are on sinks' recorders and topic
readers, with deadlines, and blocking helpers go through ``asyncio.to_thread``.

Most scenarios share one worker (starting one takes seconds); the circuit breaker and the
SIGKILL scenarios need settings or a fate of their own.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import BasicAuth
from aiokafka import AIOKafkaProducer

from agents.delivery.providers.webhook import verify
from agents.routing.channels import notification_id
from pipeline.devsinks.recording import RecordedRequest
from pipeline.devsinks.run import DevSinks
from pipeline.kafka.local import LocalKafka
from schemas.timestamps import parse_timestamp
from tests.agents.conftest import PARTITIONS, Pipeline
from tests.helpers.kafka import TopicReader, produce_json
from tests.helpers.pipeline_io import event, preferences, statuses, wait_for_preferences

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
ALL_CHANNELS = ("email", "sms", "push", "in_app", "webhook")
PHONE = "+33612345678"
# Retries come back within seconds: the first waits 1 s (the floor of the backoff), the
# fourth at most 4 s; the sweep looks for due retries ten times a second.
FAST_RETRIES = {
    "CLARION_RETRY_BACKOFF": "0.5",
    "CLARION_SWEEP_INTERVAL": "0.1",
    "CLARION_MAX_ATTEMPTS": "5",
}
# Attempt 3 comes 1 s after the breaker opened: well within it, even on a loaded machine.
BREAKER_COOLDOWN = 5.0


# --- deployment -----------------------------------------------------------------------


@pytest.fixture(scope="class")
async def shared(
    kafka: LocalKafka, sinks: DevSinks, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """One worker for the scenarios that need no settings of their own.

    Its breakers never open (100 failures): the dead-letter scenario fails five times in a
    row, and an open breaker would turn its replay into a wait.
    """
    deployment = Pipeline(
        bootstrap=kafka.bootstrap,
        prefix=f"dl{uuid.uuid4().hex[:8]}.",
        data_dir=tmp_path_factory.mktemp("delivery"),
        workers=[],
    )
    worker = deployment.worker(
        **sinks.provider_env(), **FAST_RETRIES, CLARION_BREAKER_FAILURES="100"
    )
    try:
        await asyncio.to_thread(worker.start)
        yield deployment
    finally:
        await asyncio.to_thread(worker.stop)


@pytest.fixture(autouse=True)
def fresh_sinks(sinks: DevSinks) -> DevSinks:
    """No request, message or pending fault left over from an earlier test."""
    for sink in (sinks.smtp, sinks.twilio, sinks.fcm, sinks.webhook):
        sink.reset()
    return sinks


def user_preferences(
    user_id: str, sinks: DevSinks, *, push_tokens: Iterable[str] = ("tok-1",)
) -> dict[str, Any]:
    return preferences(
        user_id,
        addresses={
            "email": f"{user_id}@example.com",
            "phone": PHONE,
            "push_tokens": list(push_tokens),
            "webhook_url": sinks.webhook.hook_url(f"/hooks/{user_id}"),
        },
        channels=dict.fromkeys(ALL_CHANNELS, True),
    )


def address_of(prefs: dict[str, Any], channel: str) -> str:
    addresses = prefs["addresses"]
    return {
        "email": addresses["email"],
        "sms": addresses["phone"],
        "push": addresses["push_tokens"][0],
        "in_app": prefs["user_id"],
        "webhook": addresses["webhook_url"],
    }[channel]


async def add_users(pipeline: Pipeline, *prefs: dict[str, Any]) -> None:
    await produce_json(pipeline.bootstrap, pipeline.topics.preferences, list(prefs))
    for value in prefs:
        await asyncio.to_thread(wait_for_preferences, pipeline, value["user_id"])


async def send_events(pipeline: Pipeline, *events: dict[str, Any]) -> None:
    await produce_json(pipeline.bootstrap, pipeline.topics.events, list(events))


async def one_webhook_event(
    pipeline: Pipeline, sinks: DevSinks, user_id: str
) -> tuple[dict[str, Any], str]:
    """A user with every address, one event to them on the webhook channel, and its id."""
    prefs = user_preferences(user_id, sinks)
    await add_users(pipeline, prefs)
    await send_events(pipeline, event(f"ev-{user_id}", user_id, channels=["webhook"]))
    address = address_of(prefs, "webhook")
    return prefs, notification_id(user_id, f"ev-{user_id}", "webhook", address)


def open_reader(pipeline: Pipeline) -> TopicReader:
    t = pipeline.topics
    return pipeline.reader(
        *(t.deliver(channel) for channel in ALL_CHANNELS),
        t.status,
        t.retry,
        t.dlq,
        t.preferences,
    )


# --- reading what happened --------------------------------------------------------------


def history(reader: TopicReader, pipeline: Pipeline, nid: str) -> list[dict[str, Any]]:
    return [s for s in statuses(reader, pipeline) if s["notification_id"] == nid]


def names(reader: TopicReader, pipeline: Pipeline, nid: str) -> list[str]:
    return [s["status"] for s in history(reader, pipeline, nid)]


def records_of(reader: TopicReader, topic: str, nid: str) -> list[dict[str, Any]]:
    values = [r.json() for r in reader.on(topic) if r.value is not None]
    return [v for v in values if v.get("notification_id") == nid]


async def web_get(pipeline: Pipeline, path: str) -> Any:
    """A read view of the (last started) worker's web API, which answers loopback clients."""
    url = f"http://127.0.0.1:{pipeline.workers[-1].web_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def webhook_requests(sinks: DevSinks, nid: str) -> list[RecordedRequest]:
    return [r for r in sinks.webhook.requests.items if r.headers.get("webhook-id") == nid]


def epoch(timestamp: str) -> float:
    parsed = parse_timestamp(timestamp)
    assert parsed is not None, timestamp
    return parsed.timestamp()


def signed(sinks: DevSinks, request: RecordedRequest) -> bool:
    """Verified as a receiver would, with the secret the worker was given."""
    headers = request.headers
    return verify(
        sinks.provider_env()["CLARION_WEBHOOK_SECRET"],
        headers["webhook-id"],
        headers["webhook-timestamp"],
        request.body,
        headers["webhook-signature"],
    )


async def clarion_cli(pipeline: Pipeline, *args: str) -> tuple[int, str, str]:
    """``clarion <args>`` as an operator runs it, against this deployment's topics."""
    env = {
        **os.environ,
        "CLARION_BROKER": f"kafka://{pipeline.bootstrap}",
        "CLARION_TOPIC_PREFIX": pipeline.prefix,
        "CLARION_PARTITIONS": str(PARTITIONS),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pipeline.cli",
        *args,
        env=env,
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# --- the scenarios --------------------------------------------------------------------


class TestOnOneWorker:
    """The scenarios that need no settings of their own share a worker, one after the other
    (a fault injected into a sink hits whichever request comes next)."""

    async def test_each_channel_delivers_once_in_its_provider_wire_format(
        self, shared: Pipeline, sinks: DevSinks
    ) -> None:
        pipeline = shared
        prefs = user_preferences("every", sinks, push_tokens=["tok-every"])
        await add_users(pipeline, prefs)
        await send_events(
            pipeline,
            event(
                "ev-every",
                "every",
                channels=list(ALL_CHANNELS),
                title="Invoice 42 is ready",
                body="Your invoice is ready.\n\nThank you!",
            ),
        )
        nids = {
            c: notification_id("every", "ev-every", c, address_of(prefs, c)) for c in ALL_CHANNELS
        }
        env = sinks.provider_env()
        async with open_reader(pipeline) as reader:
            await reader.wait_for(
                lambda _: all("sent" in names(reader, pipeline, nid) for nid in nids.values()),
                what="every channel sent",
            )

            for channel in ("email", "sms", "push", "webhook"):
                assert names(reader, pipeline, nids[channel]) == ["queued", "sending", "sent"], (
                    channel
                )
            # In-app has nothing to send: it is stored, in one step.
            in_app = history(reader, pipeline, nids["in_app"])
            assert [s["status"] for s in in_app] == ["queued", "sent"]
            assert in_app[-1]["reason"] == "stored in the in-app inbox"
            inbox = await web_get(pipeline, "/users/every/inbox")
            assert [item["notification_id"] for item in inbox["items"]] == [nids["in_app"]]
            assert inbox["items"][0]["subject"] == "Invoice 42 is ready"
            assert inbox["items"][0]["body"] == "Your invoice is ready.\n\nThank you!"
            assert inbox["unread"] == 1

            # Email: one message, To/Subject, text and HTML parts, Message-ID from the id.
            mails = [
                m
                for m in sinks.smtp.messages.items
                if m.message["X-Clarion-Notification-Id"] == nids["email"]
            ]
            assert len(mails) == 1
            mail = mails[0]
            assert mail.rcpt_tos == ("every@example.com",)
            assert mail.message["To"] == "every@example.com"
            assert mail.message["Subject"] == "Invoice 42 is ready"
            assert mail.message["Message-ID"] == f"<{nids['email']}@clarion.localhost>"
            assert mail.part("plain") is not None
            assert mail.part("plain").strip() == "Your invoice is ready.\n\nThank you!"
            html = mail.part("html")
            assert html is not None
            assert "<p>Your invoice is ready.</p>" in html
            assert "<p>Thank you!</p>" in html

            # SMS: Twilio's form fields and basic auth with the account sid and token.
            texts = [
                r
                for r in sinks.twilio.requests.items
                if r.headers.get("I-Twilio-Idempotency-Token") == nids["sms"]
            ]
            assert len(texts) == 1
            assert texts[0].path.endswith(
                f"/Accounts/{env['CLARION_TWILIO_ACCOUNT_SID']}/Messages.json"
            )
            assert texts[0].form() == {
                "To": PHONE,
                "From": "+15005550006",
                "Body": "Your invoice is ready.\n\nThank you!",
            }
            auth = BasicAuth.decode(texts[0].headers["Authorization"])
            assert (auth.login, auth.password) == (
                env["CLARION_TWILIO_ACCOUNT_SID"],
                env["CLARION_TWILIO_AUTH_TOKEN"],
            )
            assert len(sinks.twilio.messages) == 1

            # Push: FCM v1 JSON with the token, title and body, and the bearer token.
            pushes = [
                r
                for r in sinks.fcm.requests.items
                if r.json()["message"]["data"]["notification_id"] == nids["push"]
            ]
            assert len(pushes) == 1
            assert pushes[0].path == f"/v1/projects/{env['CLARION_FCM_PROJECT_ID']}/messages:send"
            assert pushes[0].headers["Authorization"] == f"Bearer {env['CLARION_FCM_TOKEN']}"
            assert pushes[0].json()["message"] == {
                "token": "tok-every",
                "notification": {
                    "title": "Invoice 42 is ready",
                    "body": "Your invoice is ready.\n\nThank you!",
                },
                "data": {"notification_id": nids["push"]},
            }

            # Webhook: signed (Standard Webhooks) with the configured secret, id = notification.
            hooks = webhook_requests(sinks, nids["webhook"])
            assert len(hooks) == 1
            hook = hooks[0]
            assert hook.path == "/hooks/every"
            assert signed(sinks, hook)
            assert hook.headers["webhook-id"] == nids["webhook"]
            payload = hook.json()
            assert payload["notification_id"] == nids["webhook"]
            assert payload["event_ids"] == ["ev-every"]
            assert payload["subject"] == "Invoice 42 is ready"
            assert "address" not in payload

    async def test_a_500_is_retried_through_the_retry_topic_and_delivered_once(
        self, shared: Pipeline, sinks: DevSinks
    ) -> None:
        pipeline = shared
        await add_users(pipeline, user_preferences("flaky", sinks))
        sinks.twilio.fail_next(1, status=500)
        await send_events(pipeline, event("ev-flaky", "flaky", channels=["sms"]))
        nid = notification_id("flaky", "ev-flaky", "sms", PHONE)
        async with open_reader(pipeline) as reader:
            await reader.wait_for(lambda _: "sent" in names(reader, pipeline, nid), what="sms sent")
            await reader.catch_up()

            assert names(reader, pipeline, nid) == [
                "queued",
                "sending",
                "retrying",
                "sending",
                "sent",
            ]
            requests = [
                r
                for r in sinks.twilio.requests.items
                if r.headers.get("I-Twilio-Idempotency-Token") == nid
            ]
            assert len(requests) == 2
            assert requests[0].form() == requests[1].form()
            assert len(sinks.twilio.messages) == 1  # the 500 created no message

            retries = records_of(reader, pipeline.topics.retry, nid)
            assert len(retries) == 1
            retry = retries[0]
            assert retry["attempt"] == 2
            assert [(e["attempt"], e["transient"]) for e in retry["errors"]] == [(1, True)]
            assert "HTTP 500" in retry["errors"][0]["error"]
            not_before = epoch(retry["not_before"])
            failed_at = epoch(retry["errors"][0]["at"])
            assert not_before >= failed_at + 1.0 - 0.002  # the backoff's floor, in ms
            assert not_before > requests[0].received_at
            # The second attempt waited for not_before (ms precision on the timestamp).
            assert requests[1].received_at >= not_before - 0.01
            retrying = history(reader, pipeline, nid)[2]
            assert "HTTP 500" in retrying["reason"]
            assert retry["not_before"] in retrying["reason"]

    async def test_a_permanent_400_fails_at_once_into_the_dlq(
        self, shared: Pipeline, sinks: DevSinks
    ) -> None:
        pipeline = shared
        sinks.webhook.fail_next(1, status=400)
        prefs, nid = await one_webhook_event(pipeline, sinks, "refused")
        async with open_reader(pipeline) as reader:
            await reader.wait_for(
                lambda _: (
                    "failed" in names(reader, pipeline, nid)
                    and records_of(reader, pipeline.topics.dlq, nid)
                ),
                what="failed and dead-lettered",
            )
            await reader.catch_up()

            assert names(reader, pipeline, nid) == ["queued", "sending", "failed"]
            failed = history(reader, pipeline, nid)[-1]
            assert failed["reason"].startswith("permanent failure: HTTP 400")
            assert records_of(reader, pipeline.topics.retry, nid) == []
            assert len(webhook_requests(sinks, nid)) == 1

            [letter] = records_of(reader, pipeline.topics.dlq, nid)
            assert letter["error"].startswith("HTTP 400")
            assert letter["attempts"] == 1
            assert letter["errors"] == [
                {
                    "attempt": 1,
                    "at": letter["failed_at"],
                    "error": letter["error"],
                    "transient": False,
                }
            ]
            # The status is stamped a moment after the letter (its own clock reading).
            assert 0 <= epoch(failed["at"]) - epoch(letter["failed_at"]) < 1
            assert letter["address"] == address_of(prefs, "webhook")

    async def test_loopback_in_any_spelling_is_refused_without_a_request(
        self, shared: Pipeline, sinks: DevSinks
    ) -> None:
        """127.0.0.2 as inet_aton reads it: the guard itself refuses, no connection is made."""
        pipeline = shared
        connections: list[object] = []

        async def accept(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connections.append(writer.get_extra_info("peername"))
            writer.close()

        # A listener where the webhooks would land if the guard let them through.
        listener = await asyncio.start_server(accept, "127.0.0.2", 0)
        port = listener.sockets[0].getsockname()[1]
        spellings = {"short": "127.2", "decimal": "2130706434", "octal": "0177.0.0.2"}
        prefs = {}
        for label, host in spellings.items():
            prefs[label] = user_preferences(f"spelled-{label}", sinks)
            prefs[label]["addresses"]["webhook_url"] = f"http://{host}:{port}/hook"
        try:
            await add_users(pipeline, *prefs.values())
            await send_events(
                pipeline,
                *(
                    event(f"ev-{p['user_id']}", p["user_id"], channels=["webhook"])
                    for p in prefs.values()
                ),
            )
            nids = [
                notification_id(
                    p["user_id"], f"ev-{p['user_id']}", "webhook", address_of(p, "webhook")
                )
                for p in prefs.values()
            ]
            async with open_reader(pipeline) as reader:
                await reader.wait_for(
                    lambda _: all(
                        {"failed", "retrying"} & set(names(reader, pipeline, nid)) for nid in nids
                    ),
                    what="every webhook to a spelled-out loopback address ended",
                )
                await reader.catch_up()
                for nid in nids:
                    assert names(reader, pipeline, nid) == ["queued", "sending", "failed"]
                    reason = history(reader, pipeline, nid)[-1]["reason"]
                    assert "loopback address 127.0.0.2" in reason, reason
                    assert "CLARION_WEBHOOK_ALLOWED_HOSTS" in reason
                    assert records_of(reader, pipeline.topics.retry, nid) == []
                    [letter] = records_of(reader, pipeline.topics.dlq, nid)
                    assert letter["attempts"] == 1
        finally:
            listener.close()
            await listener.wait_closed()
        assert connections == []

    async def test_transient_failures_dead_letter_after_max_attempts_and_replay_delivers(
        self, shared: Pipeline, sinks: DevSinks
    ) -> None:
        pipeline = shared
        sinks.webhook.fail_next(5, status=503)
        _, nid = await one_webhook_event(pipeline, sinks, "doomed")
        async with open_reader(pipeline) as reader:
            await reader.wait_for(
                lambda _: (
                    "dead_lettered" in names(reader, pipeline, nid)
                    and records_of(reader, pipeline.topics.dlq, nid)
                ),
                deadline_s=90,
                what="dead-lettered after five attempts",
            )
            await reader.catch_up()

            assert names(reader, pipeline, nid) == [
                "queued",
                *(["sending", "retrying"] * 4),
                "sending",
                "dead_lettered",
            ]
            assert history(reader, pipeline, nid)[-1]["reason"].startswith(
                "gave up after 5 attempts: HTTP 503"
            )
            attempts = webhook_requests(sinks, nid)
            assert len(attempts) == 5
            assert all(signed(sinks, r) for r in attempts)

            retries = records_of(reader, pipeline.topics.retry, nid)
            assert [r["attempt"] for r in retries] == [2, 3, 4, 5]
            not_befores = [epoch(r["not_before"]) for r in retries]
            assert not_befores == sorted(not_befores)
            for retry, later in zip(retries, attempts[1:], strict=True):
                assert later.received_at >= epoch(retry["not_before"]) - 0.01

            [letter] = records_of(reader, pipeline.topics.dlq, nid)
            assert letter["attempts"] == 5
            assert letter["error"].startswith("HTTP 503")
            assert [e["attempt"] for e in letter["errors"]] == [1, 2, 3, 4, 5]
            assert all(
                e["transient"] and e["error"].startswith("HTTP 503") for e in letter["errors"]
            )

            # An operator looks at the DLQ, then replays this one letter.
            code, out, err = await clarion_cli(pipeline, "dlq", "list")
            assert code == 0, err
            [line] = [line for line in out.splitlines() if nid in line]
            assert "webhook" in line
            assert "user=doomed" in line
            assert "attempts=5" in line
            assert "HTTP 503" in line

            code, out, err = await clarion_cli(pipeline, "dlq", "replay", "--id", nid)
            assert code == 0, err
            assert f"replayed {nid} to webhook" in out

            await reader.wait_for(
                lambda _: names(reader, pipeline, nid)[-1:] == ["sent"], what="the replay delivered"
            )
            attempts = webhook_requests(sinks, nid)
            assert len(attempts) == 6
            assert signed(sinks, attempts[-1])
            assert attempts[-1].json()["notification_id"] == nid
            assert names(reader, pipeline, nid)[-3:] == ["dead_lettered", "sending", "sent"]
            assert history(reader, pipeline, nid)[-2]["reason"] == "attempt 1"

    async def test_an_unregistered_push_token_is_removed_from_the_preferences(
        self, shared: Pipeline, sinks: DevSinks
    ) -> None:
        pipeline = shared
        prefs = user_preferences("moved", sinks, push_tokens=["tok-gone", "tok-live"])
        await add_users(pipeline, prefs)
        sinks.fcm.unregistered.add("tok-gone")
        await send_events(pipeline, event("ev-moved", "moved", channels=["push"]))
        gone = notification_id("moved", "ev-moved", "push", "tok-gone")
        live = notification_id("moved", "ev-moved", "push", "tok-live")

        def updates() -> list[dict[str, Any]]:
            return [
                r.json()
                for r in reader.on(pipeline.topics.preferences)
                if r.key == b"moved" and r.value is not None
            ]

        async with open_reader(pipeline) as reader:
            await reader.wait_for(
                lambda _: (
                    "sent" in names(reader, pipeline, live)
                    and "failed" in names(reader, pipeline, gone)
                    and len(updates()) == 2
                ),
                what="one token delivered, the other forgotten",
            )
            failed = history(reader, pipeline, gone)[-1]
            assert "UNREGISTERED" in failed["reason"]
            assert "tok-gone" in failed["reason"]

            original, update = updates()
            assert original == prefs
            assert update["addresses"]["push_tokens"] == ["tok-live"]
            # Only the dead token goes: everything else the user set is kept.
            assert update["addresses"] | {"push_tokens": None} == prefs["addresses"] | {
                "push_tokens": None
            }
            assert update["channels"] == prefs["channels"]
            assert update["categories"] == prefs["categories"]

        # The worker's own table follows the update like any producer's.
        await asyncio.to_thread(
            wait_for_preferences,
            pipeline,
            "moved",
            lambda body: body["addresses"]["push_tokens"] == ["tok-live"],
        )

    async def test_a_delivery_whose_transaction_was_aborted_is_never_sent(
        self, shared: Pipeline, sinks: DevSinks
    ) -> None:
        # What a routing worker killed mid-commit leaves behind: output never committed.
        pipeline = shared
        topic = pipeline.topics.deliver("webhook")
        url = sinks.webhook.hook_url("/hooks/aborted")

        def delivery(nid: str) -> bytes:
            return orjson.dumps(
                {
                    "notification_id": nid,
                    "user_id": "aborted",
                    "channel": "webhook",
                    "address": url,
                    "subject": "Hello",
                    "body": "Hi",
                    "event_ids": [nid],
                    "priority": "normal",
                    "category": "billing",
                    "created_at": "2026-11-24T10:00:00Z",
                }
            )

        producer = AIOKafkaProducer(
            bootstrap_servers=pipeline.bootstrap, transactional_id=f"test-{uuid.uuid4().hex}"
        )
        await producer.start()
        try:
            await producer.begin_transaction()
            await producer.send_and_wait(topic, delivery("ntf_aborted"), key=b"aborted")
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait(topic, delivery("ntf_committed"), key=b"aborted")
        finally:
            await producer.stop()

        async with open_reader(pipeline) as reader:
            await reader.wait_for(
                lambda _: "sent" in names(reader, pipeline, "ntf_committed"),
                what="the committed delivery sent",
            )
            assert names(reader, pipeline, "ntf_aborted") == []
        assert len(webhook_requests(sinks, "ntf_committed")) == 1
        assert webhook_requests(sinks, "ntf_aborted") == []


async def test_the_circuit_breaker_stops_knocking_then_recovers(
    pipeline: Pipeline, sinks: DevSinks
) -> None:
    worker = pipeline.worker(
        **sinks.provider_env(),
        **(FAST_RETRIES | {"CLARION_MAX_ATTEMPTS": "10"}),
        CLARION_BREAKER_FAILURES="2",
        CLARION_BREAKER_COOLDOWN=str(BREAKER_COOLDOWN),
    )
    await asyncio.to_thread(worker.start)
    try:
        sinks.webhook.fail_next(2, status=503)
        _, nid = await one_webhook_event(pipeline, sinks, "outage")
        async with open_reader(pipeline) as reader:
            await reader.wait_for(
                lambda _: "sent" in names(reader, pipeline, nid),
                deadline_s=90,
                what="delivered once the breaker closed",
            )
            changes = history(reader, pipeline, nid)
    finally:
        await asyncio.to_thread(worker.stop)

    retrying = [s["reason"] for s in changes if s["status"] == "retrying"]
    # Two real failures open the breaker; the next attempt does not reach the provider.
    assert len(retrying) >= 3
    assert "HTTP 503" in retrying[0]
    assert "HTTP 503" in retrying[1]
    assert all("circuit open" in reason for reason in retrying[2:])
    assert [s["status"] for s in changes][-2:] == ["sending", "sent"]

    requests = webhook_requests(sinks, nid)
    assert len(requests) == 3  # two failures, then the probe that closed the breaker
    _, opened, probe = requests
    # Nothing reached the provider during the cool-down, which began after the 2nd answer.
    assert probe.received_at - opened.received_at >= BREAKER_COOLDOWN - 0.05
    assert signed(sinks, probe)


async def test_a_sigkill_mid_delivery_loses_nothing_and_repeats_keep_their_webhook_id(
    pipeline: Pipeline, sinks: DevSinks
) -> None:
    worker = pipeline.worker(
        **sinks.provider_env(), **FAST_RETRIES, CLARION_DELIVERY_CONCURRENCY="4"
    )
    await asyncio.to_thread(worker.start)
    try:
        users = [user_preferences(f"sk{n}", sinks) for n in range(4)]
        await add_users(pipeline, *users)
        events = [
            event(f"ev-{n}", prefs["user_id"], channels=["webhook"])
            for prefs in users
            for n in range(15)
        ]
        expected = {
            notification_id(e["user_id"], e["event_id"], "webhook", address_of(prefs, "webhook"))
            for prefs in users
            for e in events
            if e["user_id"] == prefs["user_id"]
        }
        # Each answer takes 0.25 s: four in flight at a time, about 4 s for all of them.
        sinks.webhook.fail_next(len(events), delay=0.25)
        await send_events(pipeline, *events)
        await sinks.webhook.requests.wait_for(15, within=90)
        await asyncio.to_thread(worker.kill)
        assert len({r.headers["webhook-id"] for r in sinks.webhook.requests.items}) < len(
            expected
        ), "killed too late: every delivery had already been attempted"

        await asyncio.to_thread(worker.start)  # same data directory
        async with open_reader(pipeline) as reader:

            def unsent() -> list[str]:
                return sorted(nid for nid in expected if "sent" not in names(reader, pipeline, nid))

            try:
                await reader.wait_for(
                    lambda _: not unsent(),
                    deadline_s=120,
                    what="every notification sent after the restart",
                )
            except AssertionError as exc:
                raise AssertionError(
                    f"{len(unsent())} of {len(expected)} notifications never sent after the "
                    f"restart (worker log: {worker.data_dir / 'worker.log'})"
                ) from exc
    finally:
        await asyncio.to_thread(worker.stop)

    received = sinks.webhook.requests.items
    assert {r.headers["webhook-id"] for r in received} == expected
    for request in received:
        # A repeat is the same message: same webhook-id (the receivers' idempotency key)
        # for the same notification, signed like the first.
        assert request.headers["webhook-id"] == request.json()["notification_id"]
        assert signed(sinks, request)
    repeats = Counter(r.headers["webhook-id"] for r in received)
    assert sum(repeats.values()) >= len(expected)
