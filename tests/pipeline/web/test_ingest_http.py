"""POST /events through a real worker process and the real broker."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from pipeline.kafka.local import LocalKafka
from pipeline.web.ingest import EventPublisher, PublishError
from schemas.partitioner import partition_for_key
from tests.helpers.deployment import PARTITIONS, Pipeline, deployment
from tests.helpers.kafka import Received
from tests.helpers.pipeline_io import event, statuses
from tests.helpers.worker import WorkerProcess

pytestmark = pytest.mark.integration

WRITER = "writer-key-0123456789"
READER = "reader-key-0123456789"
HASHED_WRITER = "hashed-writer-key-0123456789"
MAX_EVENT_BYTES = 2048
BODY_LIMIT = MAX_EVENT_BYTES * 1000


@dataclass
class Deployment:
    pipeline: Pipeline
    worker: WorkerProcess

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.worker.web_port}/events"


@pytest.fixture(scope="module")
def keyed(kafka: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One worker with API keys for the whole module: the tests use their own event ids."""
    hashed = hashlib.sha256(HASHED_WRITER.encode()).hexdigest()
    setup = deployment(kafka, tmp_path_factory.mktemp("ingest-http"))
    pipeline = next(setup)
    try:
        worker = pipeline.worker(
            CLARION_API_KEYS=f"{WRITER}:write,{READER}:read,sha256={hashed}:write",
            CLARION_MAX_EVENT_BYTES=str(MAX_EVENT_BYTES),
            CLARION_MAX_REQUEST_BYTES=str(BODY_LIMIT),
        ).start()
        yield Deployment(pipeline=pipeline, worker=worker)
    finally:
        setup.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


async def post(
    http: aiohttp.ClientSession,
    url: str,
    data: Any,
    *,
    key: str | None = WRITER,
    content_type: str = "application/json",
) -> Reply:
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    if not isinstance(data, bytes | str) and not hasattr(data, "__aiter__"):
        data = orjson.dumps(data)
    async with http.post(url, data=data, headers=headers) as reply:
        return Reply(reply.status, await reply.json(content_type=None), reply.headers)


def event_ids(records: list[Received]) -> list[str]:
    ids = []
    for record in records:
        try:
            value = record.json()
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            ids.append(value.get("event_id"))
    return ids


async def test_accepted_events_are_published_keyed_by_user_and_routed(
    keyed: Deployment, http: aiohttp.ClientSession
) -> None:
    batch = [event("ok-a1", "alice"), event("ok-b1", "bob"), event("ok-a2", "alice")]
    reply = await post(http, keyed.url(), batch)
    assert (reply.status, reply.body) == (202, {"accepted": ["ok-a1", "ok-b1", "ok-a2"]})

    single = orjson.dumps(event("ok-c1", "carol", unknown_field={"kept": True}))
    reply = await post(http, keyed.url(), single, key=HASHED_WRITER)
    assert (reply.status, reply.body) == (202, {"accepted": ["ok-c1"]})

    pipeline = keyed.pipeline
    topics = pipeline.topics
    expected = {"ok-a1", "ok-b1", "ok-a2", "ok-c1"}
    async with pipeline.reader(topics.events, topics.status) as reader:
        await reader.wait_for(
            lambda _: (
                expected
                <= {
                    s["notification_id"]
                    for s in statuses(reader, pipeline)
                    if s["status"] == "accepted"
                }
            ),
            what="every event accepted by the ingest agent",
        )
        published = {r.json()["event_id"]: r for r in reader.on(topics.events)}
        assert expected <= published.keys()
        for event_id in expected:
            record = published[event_id]
            assert record.key == record.json()["user_id"].encode()
            assert record.partition == partition_for_key(record.key, PARTITIONS)
        # One event is published as sent, byte for byte, unknown fields included.
        assert published["ok-c1"].value == single
        # In order within a user's partition.
        alice = [r.json()["event_id"] for r in reader.on(topics.events) if r.key == b"alice"]
        assert [e for e in alice if e in expected] == ["ok-a1", "ok-a2"]


async def test_one_invalid_event_rejects_the_whole_batch_and_publishes_nothing(
    keyed: Deployment, http: aiohttp.ClientSession
) -> None:
    batch = [
        event("inv-ok", "dave"),
        {k: v for k, v in event("inv-bad", "dave").items() if k != "category"},
        42,
        event("inv-big", "dave", body="x" * MAX_EVENT_BYTES),
        event("inv-prio", "dave", priority="urgent"),
    ]
    reply = await post(http, keyed.url(), batch)
    assert reply.status == 400
    assert reply.body["error"] == "invalid events"
    detail = reply.body["detail"]
    assert [(d["index"], d["event_id"]) for d in detail] == [
        (1, "inv-bad"),
        (2, None),
        (3, "inv-big"),
        (4, "inv-prio"),
    ]
    assert "'category'" in detail[0]["reason"]
    assert "must be a JSON object" in detail[1]["reason"]
    assert f"the limit is {MAX_EVENT_BYTES}" in detail[2]["reason"]
    assert "'priority'" in detail[3]["reason"]

    # A single invalid event: the same answer, index 0.
    reply = await post(http, keyed.url(), event("inv-single", "dave", priority="urgent"))
    assert reply.status == 400
    assert [(d["index"], d["event_id"]) for d in reply.body["detail"]] == [(0, "inv-single")]

    # Sent afterwards to the same partition: once it is there, the others would be too.
    reply = await post(http, keyed.url(), [event("inv-marker", "dave")])
    assert reply.status == 202
    topics = keyed.pipeline.topics
    async with keyed.pipeline.reader(topics.events) as reader:
        await reader.wait_for(
            lambda records: "inv-marker" in event_ids(records), what="the marker event"
        )
        await reader.catch_up()
        published = event_ids(reader.on(topics.events))
        assert published.count("inv-marker") == 1
        assert not {"inv-ok", "inv-bad", "inv-big", "inv-prio", "inv-single"} & set(published)
        assert all(r.value != b"42" for r in reader.on(topics.events))


def deep_event_json(event_id: str, levels: int) -> bytes:
    """An event whose ``data`` nests ``levels`` deep, written by hand: orjson stops at 254."""
    head = orjson.dumps(event(event_id, "ivy", template="welcome", title=None, body=None))
    return head[:-1] + b', "data": ' + b'{"k": ' * (levels - 1) + b"{}" + b"}" * levels


async def test_deep_data_and_far_send_at_are_per_event_reasons_not_server_errors(
    keyed: Deployment, http: aiohttp.ClientSession
) -> None:
    ok = orjson.dumps(event("deep-ok", "ivy"))
    far = orjson.dumps(event("deep-far", "ivy", send_at="9999-12-31T23:59:59Z"))
    batch = b"[" + b",".join([ok, deep_event_json("deep-300", 300), far]) + b"]"
    reply = await post(http, keyed.url(), batch)
    assert reply.status == 400, reply.body
    assert reply.body["error"] == "invalid events"
    assert reply.body["detail"] == [
        {
            "index": 1,
            "event_id": "deep-300",
            "reason": "field 'data' nests 300 levels deep; at most 64 are allowed",
        },
        {"index": 2, "event_id": "deep-far", "reason": reply.body["detail"][1]["reason"]},
    ]
    assert reply.body["detail"][1]["reason"].startswith(
        "field 'send_at' (9999-12-31T23:59:59Z) is more than 365 days ahead"
    )
    # One event alone (shallower, to stay within this worker's CLARION_MAX_EVENT_BYTES).
    reply = await post(http, keyed.url(), deep_event_json("deep-single", 260))
    assert reply.status == 400, reply.body
    assert reply.body["detail"][0]["reason"].startswith("field 'data' nests 260 levels")


@pytest.mark.parametrize(
    ("key", "status", "detail", "challenge"),
    [
        (None, 401, "missing 'Authorization: Bearer <key>' header", 'Bearer realm="clarion"'),
        ("not-a-key", 401, "unknown API key", 'Bearer realm="clarion", error="invalid_token"'),
        (
            READER,
            403,
            "this API key lacks the 'write' scope",
            'Bearer realm="clarion", error="insufficient_scope", scope="write"',
        ),
        # The digest of a hashed key is not the key.
        (
            "sha256=" + "0" * 64,
            401,
            "unknown API key",
            'Bearer realm="clarion", error="invalid_token"',
        ),
    ],
)
async def test_a_write_key_is_required_even_from_loopback(
    keyed: Deployment,
    http: aiohttp.ClientSession,
    key: str | None,
    status: int,
    detail: str,
    challenge: str,
) -> None:
    reply = await post(http, keyed.url(), event("auth-1", "erin"), key=key)
    assert reply.status == status
    assert reply.body == {
        "error": "unauthorized" if status == 401 else "forbidden",
        "detail": detail,
    }
    assert reply.headers["WWW-Authenticate"] == challenge


async def test_a_full_batch_over_a_mebibyte_is_accepted(
    keyed: Deployment, http: aiohttp.ClientSession
) -> None:
    """1000 events, past aiohttp's default 1 MiB request limit but within ours."""
    batch = [event(f"full-{n}", f"user-{n % 50}", body="y" * 1100) for n in range(1000)]
    assert 1024 * 1024 < len(orjson.dumps(batch)) <= BODY_LIMIT
    reply = await post(http, keyed.url(), batch)
    assert reply.status == 202
    assert reply.body == {"accepted": [f"full-{n}" for n in range(1000)]}


async def test_too_large_bodies_are_refused(keyed: Deployment, http: aiohttp.ClientSession) -> None:
    # Declared too large: refused from the headers alone, before any byte of the body.
    reader, writer = await asyncio.open_connection("127.0.0.1", keyed.worker.web_port)
    try:
        writer.write(
            (
                "POST /events HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{keyed.worker.web_port}\r\n"
                f"Authorization: Bearer {WRITER}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {BODY_LIMIT + 1}\r\n"
                "\r\n"
            ).encode()
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 30)
        assert status_line.split()[1] == b"413", status_line
    finally:
        writer.close()

    # No length given (chunked): refused once the bytes read pass the limit.
    async def chunks() -> AsyncIterator[bytes]:
        yield b"["
        piece = orjson.dumps(event("big-x", "frank")) + b","
        for _ in range(BODY_LIMIT // len(piece) + 10):
            yield piece
        yield b"{}]"

    reply = await post(http, keyed.url(), chunks())
    assert reply.status == 413
    assert reply.body["error"] == "body too large"

    # Small enough in bytes, but more than 1000 events.
    many = [{"event_id": f"m-{n}", "user_id": "frank"} for n in range(1001)]
    assert len(orjson.dumps(many)) < BODY_LIMIT
    reply = await post(http, keyed.url(), many)
    assert reply.status == 413
    assert reply.body == {
        "error": "too many events",
        "detail": "1001 events; at most 1000 per request",
    }


@pytest.mark.parametrize(
    ("data", "content_type", "error"),
    [
        (b'{"event_id": ', "application/json", "invalid JSON"),
        (b"", "application/json", "invalid body"),
        (b"[]", "application/json", "invalid body"),
        (b'"an event"', "application/json", "invalid body"),
        (orjson.dumps(event("ct-1", "gina")), "text/plain", "unsupported content type"),
        (
            orjson.dumps(event("ct-1", "gina")),
            "application/json; charset=latin-1",
            "unsupported charset",
        ),
    ],
)
async def test_malformed_requests_are_bad_requests(
    keyed: Deployment, http: aiohttp.ClientSession, data: bytes, content_type: str, error: str
) -> None:
    reply = await post(http, keyed.url(), data, content_type=content_type)
    assert reply.status == 400
    assert reply.body["error"] == error
    assert reply.body["detail"]


async def test_other_methods_are_not_allowed(
    keyed: Deployment, http: aiohttp.ClientSession
) -> None:
    async with http.get(keyed.url()) as reply:
        assert reply.status == 401  # behind the key like POST
    async with http.get(keyed.url(), headers={"Authorization": f"Bearer {WRITER}"}) as reply:
        assert reply.status == 405
        assert reply.headers["Allow"] == "POST"
        assert (await reply.json())["error"] == "method not allowed"
    async with http.put(keyed.url(), data=b"{}") as reply:
        assert reply.status == 405


def non_loopback_address() -> str | None:
    """An address of this host other than loopback, to reach the worker from, if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks a route
            address: str = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_without_keys_only_loopback_clients_are_served(
    pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    worker = pipeline.worker(
        CLARION_WEB_HOST="0.0.0.0"
    ).start()  # reachable from a non-loopback address
    local = Deployment(pipeline=pipeline, worker=worker)
    reply = await post(http, local.url(), [event("lo-1", "hana")], key=None)
    assert (reply.status, reply.body) == (202, {"accepted": ["lo-1"]})
    address = non_loopback_address()
    if address is None:
        pytest.skip("this host has no non-loopback address to connect from")
    reply = await post(http, local.url(address), [event("lo-2", "hana")], key=None)
    assert reply.status == 403
    assert "CLARION_API_KEYS" in reply.body["detail"]
    async with pipeline.reader(pipeline.topics.events) as reader:
        await reader.wait_for(lambda records: "lo-1" in event_ids(records), what="lo-1")
        await reader.catch_up()
        assert "lo-2" not in event_ids(reader.records)


async def test_publisher_reports_an_unreachable_broker_and_refuses_after_stop() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    publisher = EventPublisher(
        bootstrap_servers=f"127.0.0.1:{port}", topic="clarion.events", timeout=20
    )
    with pytest.raises(PublishError, match="KafkaConnectionError"):
        await publisher.publish([(b"u", b"{}", "e-1")])
    await publisher.stop()
    with pytest.raises(PublishError, match="shutting down"):
        await publisher.publish([(b"u", b"{}", "e-1")])
