"""The worker's web server itself: which routes it serves and behind which key, readiness during
start-up, malformed requests and oversized bodies.

The route test lists every route the worker's aiohttp router holds (Faust's blueprints
included, as ``clarion worker`` applies them) and requests each one on a running worker with
API keys: a route missing from ``SCOPES`` below fails it, so a new route is either guarded or
listed as public here, on purpose.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from pipeline.app import create_app
from pipeline.kafka.local import LocalKafka
from pipeline.settings import Settings
from tests.helpers.deployment import deployment
from tests.helpers.worker import WorkerProcess

pytestmark = pytest.mark.integration

READER = "reader-key-0123456789"
WRITER = "writer-key-0123456789"
MIB = 1024 * 1024

# The scope each (method, path) needs; None: no key at all. HEAD routes are Faust's automatic
# companions of GET and are checked against the GET of the same path.
SCOPES: dict[tuple[str, str], str | None] = {
    ("GET", "/health"): None,
    ("GET", "/ready"): None,
    ("GET", "/metrics"): None,
    ("GET", "/openapi.json"): "read",
    ("GET", "/events"): "write",
    ("POST", "/events"): "write",
    ("GET", "/users/{user_id}/preferences"): "read",
    ("GET", "/users/{user_id}/notifications"): "read",
    ("GET", "/notifications/{notification_id}"): "read",
    ("GET", "/users/{user_id}/inbox"): "read",
    ("GET", "/users/{user_id}/digests/pending"): "read",
    ("GET", "/users/{user_id}/inbox/stream"): "read",
    ("POST", "/users/{user_id}/inbox/read"): "write",
    ("POST", "/internal/statuses"): "read",
}


@dataclass
class Served:
    worker: WorkerProcess

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.worker.web_port}"


@pytest.fixture(scope="module")
def served(kafka: LocalKafka, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One worker with a read key and a write key, and the default request-body limit."""
    setup = deployment(kafka, tmp_path_factory.mktemp("web-server"))
    pipeline = next(setup)
    try:
        worker = pipeline.worker(CLARION_API_KEYS=f"{READER}:read,{WRITER}:write").start()
        yield Served(worker=worker)
    finally:
        setup.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def settings_for(kafka: LocalKafka, data_dir: Path, **env: str) -> Settings:
    return Settings.from_env(
        {
            "CLARION_BROKER": f"kafka://{kafka.bootstrap}",
            "CLARION_DATA_DIR": str(data_dir),
            "CLARION_PARTITIONS": "4",
            **env,
        }
    )


def worker_routes(settings: Settings) -> set[tuple[str, str]]:
    """(method, path) of every route of a worker's web server, as the worker sets it up."""
    clarion = create_app(settings)
    web = clarion.app.web
    web.init_server()  # what `clarion worker` does at start: Faust's blueprints are added here
    return {
        (route.method, route.resource.canonical)
        for route in web.web_app.router.routes()  # type: ignore[attr-defined]
        if route.resource is not None
    }


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "nobody", path)


def auth(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


async def status_of(
    http: aiohttp.ClientSession, method: str, url: str, key: str | None, body: bytes = b""
) -> int:
    data = body if method in {"POST", "PUT", "PATCH"} else None
    headers = auth(key) | ({"Content-Type": "application/json"} if data is not None else {})
    # The status is all we need: an SSE stream's body is never read.
    async with http.request(method, url, headers=headers, data=data) as reply:
        return reply.status


async def wait_ready(http: aiohttp.ClientSession, base: str, deadline_s: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_s
    while await status_of(http, "GET", f"{base}/ready", None) != 200:
        if time.monotonic() > deadline:
            raise AssertionError(f"worker at {base} not ready after {deadline_s}s")
        await asyncio.sleep(0.2)  # polling interval of the deadline loop


# --- 13: every route behind its key -------------------------------------------------------------


async def test_every_route_of_the_worker_needs_its_scope(
    served: Served, kafka: LocalKafka, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    routes = worker_routes(settings_for(kafka, tmp_path, CLARION_API_KEYS=f"{READER}:read"))
    unlisted = {route for route in routes if route[0] != "HEAD"} - SCOPES.keys()
    assert not unlisted, f"routes with no expected scope (guard them, or list them): {unlisted}"
    await wait_ready(http, served.base)
    refused = []
    for method, path in sorted(routes):
        url = served.base + concrete(path)
        anonymous = await status_of(http, method, url, None)
        if method == "HEAD" and ("GET", path) not in routes:
            # Faust adds HEAD to every view; without a GET it is 405 and runs nothing.
            if anonymous != 405:
                refused.append(f"HEAD {path}: {anonymous}, expected 405 (there is no GET)")
            continue
        scope = SCOPES[("GET", path) if method == "HEAD" else (method, path)]
        if scope is None:
            if anonymous in {401, 403}:
                refused.append(f"{method} {path}: {anonymous} without a key, expected none")
            continue
        if anonymous != 401:
            refused.append(f"{method} {path}: {anonymous} without a key, expected 401")
        holder = READER if scope == "read" else WRITER
        other = WRITER if scope == "read" else READER
        if (wrong := await status_of(http, method, url, other)) != 403:
            refused.append(f"{method} {path}: {wrong} with a key lacking {scope!r}, expected 403")
        if (right := await status_of(http, method, url, holder)) in {401, 403}:
            refused.append(f"{method} {path}: {right} with a {scope!r} key")
    assert not refused, "\n".join(refused)


@pytest.mark.parametrize(
    "path", ["/table/preferences/nobody/", "/table/", "/router/", "/router/preferences/x/", "/"]
)
async def test_faust_built_in_views_are_not_served(
    served: Served, http: aiohttp.ClientSession, path: str
) -> None:
    for key in (None, READER, WRITER):
        async with http.get(served.base + path, headers=auth(key)) as reply:
            assert reply.status == 404, (path, key, await reply.text())


# --- 9: /ready while the worker starts ----------------------------------------------------------


async def test_ready_before_the_consumer_started_is_503_with_the_failing_check(
    kafka: LocalKafka, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """The worker's web server comes up before Faust's consumer: /ready is asked in between."""
    clarion = create_app(settings_for(kafka, tmp_path))
    clarion.app.web.init_server()
    server = TestServer(clarion.app.web.web_app)  # type: ignore[attr-defined]
    await server.start_server()
    try:
        async with http.get(server.make_url("/ready")) as reply:
            body = await reply.json(content_type=None)
            assert reply.status == 503, body
        assert body["ready"] is False
        assert body["checks"]["consumer_started"] is False
        assert body["partitions"] == []
    finally:
        await server.close()


# --- 17: malformed requests and oversized bodies ------------------------------------------------

MALFORMED = {
    "over-long header": (
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n"
    ),
    "NUL byte": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n",
}


async def raw_request(port: int, request: bytes, deadline_s: float = 10.0) -> bytes:
    """Send bytes as they are and return the status line of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), deadline_s)
    finally:
        writer.close()


async def test_malformed_requests_are_one_warning_line_each(served: Served) -> None:
    log = served.worker.log_path
    start = log.stat().st_size
    for what, request in MALFORMED.items():
        status_line = await raw_request(served.worker.web_port, request)
        assert status_line.split()[1:2] == [b"400"], (what, status_line)

    def written() -> str:
        with log.open("rb") as file:
            file.seek(start)
            return file.read().decode(errors="replace")

    # Either the new warning or aiohttp's own error record: whichever comes, both requests
    # have been logged by then.
    deadline = time.monotonic() + 30
    while written().count("malformed HTTP request") + written().count(
        "Error handling request"
    ) < len(MALFORMED):
        if time.monotonic() > deadline:
            raise AssertionError(f"the refused requests were not logged:\n{written()}")
        await asyncio.sleep(0.1)  # polling interval of the deadline loop
    text = written()
    assert "Traceback" not in text, text
    assert "Error handling request" not in text, text
    refused = [line for line in text.splitlines() if "malformed HTTP request" in line]
    assert len(refused) == len(MALFORMED), text
    assert all("WARNING" in line for line in refused), refused
    assert "a" * 200 not in text, "the log repeats the client's bytes at length"


async def test_a_declared_body_over_the_default_limit_is_413_before_it_is_sent(
    served: Served,
) -> None:
    assert Settings.from_env({}).max_request_bytes == 8 * MIB
    head = (
        "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {WRITER}\r\nContent-Length: {8 * MIB + 1}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", served.worker.web_port)
    try:
        writer.write(head)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        assert status_line.split()[1] == b"413", status_line
    finally:
        writer.close()


@pytest.mark.parametrize(("path", "key"), [("/events", WRITER), ("/internal/statuses", READER)])
async def test_a_body_over_the_limit_is_413_in_the_error_shape(
    served: Served, http: aiohttp.ClientSession, path: str, key: str
) -> None:
    body = b'{"ids": ["' + b"x" * (8 * MIB) + b'"]}'
    async with http.post(
        served.base + path,
        data=body,
        headers=auth(key) | {"Content-Type": "application/json"},
    ) as reply:
        answer: Any = orjson.loads(await reply.read())
        assert reply.status == 413, answer
    assert set(answer) == {"error", "detail"}, answer
    assert str(8 * MIB) in str(answer["detail"]), answer


async def test_the_body_limit_is_configurable(
    kafka: LocalKafka, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    clarion = create_app(settings_for(kafka, tmp_path, CLARION_MAX_REQUEST_BYTES="1000"))
    clarion.app.web.init_server()
    server = TestServer(clarion.app.web.web_app)  # type: ignore[attr-defined]
    await server.start_server()
    try:
        async with http.post(
            server.make_url("/internal/statuses"),
            data=b'{"ids": ["' + b"x" * 1000 + b'"]}',
            headers={"Content-Type": "application/json"},
        ) as reply:
            answer = orjson.loads(await reply.read())
            assert reply.status == 413, answer
        assert answer["error"] == "body too large", answer
        async with http.post(
            server.make_url("/internal/statuses"),
            data=b'{"ids": []}',
            headers={"Content-Type": "application/json"},
        ) as reply:
            assert reply.status == 200, await reply.text()
    finally:
        await server.close()
