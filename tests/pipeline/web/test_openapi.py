"""The OpenAPI document: valid OpenAPI 3.1, complete, and true to the running API.

The unit tests check the document itself and that every route of the worker's web server is
in it. The integration test starts a real worker and runs schemathesis against the document
it serves: explicit requests on seeded users first (so the views answer with real rows), then
generated ones (positive and negative) on every operation, checking that no request gets an
undocumented 5xx and that every status, content type, header and body is as documented.

``GET /users/{user_id}/inbox/stream`` is not fuzzed: its 200 is an endless event stream that a
schemathesis call would wait on forever; it gets one explicit request instead. ``POST /events``
is fuzzed like every other operation.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import hypothesis
import jsonschema
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline.app import create_app
from pipeline.settings import Settings
from pipeline.web import inbox_live, ingest, views
from pipeline.web.openapi import OPENAPI_PATH, openapi_document
from schemas.json_schema import load_schema
from tests.helpers.deployment import Pipeline
from tests.helpers.kafka import produce_json
from tests.helpers.pipeline_io import IN_APP_ONLY, event, preferences

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
# GET /events only answers 405 (use POST): a route, but no operation worth documenting.
UNDOCUMENTED_ROUTES = {("GET", "/events")}
STREAM = "/users/{user_id}/inbox/stream"


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def component_validator(document: dict[str, Any], name: str) -> jsonschema.Validator:
    """A JSON Schema validator of one component, with the document's refs resolvable."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


# --- The document ------------------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1.")
    # Against the official OpenAPI 3.1 meta-schema schemathesis ships with.
    schemathesis.openapi.from_dict(document).validate()
    # Every reference points somewhere, and every schema is valid JSON Schema 2020-12.
    for node in walk(document):
        if isinstance(node.get("$ref"), str):
            assert resolve(document, node["$ref"]) is not None
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)
    # Every {template} of a path is a declared path parameter, and the other way round.
    for method, path, operation in operations(document):
        declared = {
            parameter["name"]
            for parameter in (
                resolve(document, p["$ref"]) if "$ref" in p else p
                for p in operation.get("parameters", [])
            )
            if parameter["in"] == "path"
        }
        templated = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        assert declared == templated, f"{method} {path}"
        assert operation["responses"], f"{method} {path}"


def test_errors_and_security_are_documented() -> None:
    document = openapi_document()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    text = document["components"]["securitySchemes"]["bearerAuth"]["description"]
    assert "`read`" in text
    assert "`write`" in text
    public = {"/health", "/ready", "/metrics"}
    for method, path, operation in operations(document):
        if path in public:
            assert operation["security"] == [], path
            continue
        scopes = {scope for entry in operation["security"] for scope in entry.get("bearerAuth", [])}
        assert scopes == ({"write"} if method == "POST" and "statuses" not in path else {"read"})
        for status in ("401", "403"):
            response = operation["responses"][status]
            response = resolve(document, response["$ref"]) if "$ref" in response else response
            assert response["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
    internal = document["paths"]["/internal/statuses"]["post"]
    assert internal["x-internal"] is True
    assert internal["tags"] == ["internal"]
    stream = document["paths"][STREAM]["get"]["responses"]
    assert set(stream["200"]["content"]) == {"text/event-stream"}
    assert "307" in stream


def test_limits_match_the_code() -> None:
    document = openapi_document(max_event_bytes=1000, max_request_bytes=4096)
    limit = document["components"]["parameters"]["Limit"]["schema"]
    assert (limit["maximum"], limit["default"]) == (views.MAX_LIMIT, views.DEFAULT_LIMIT)
    body = document["paths"]["/events"]["post"]["requestBody"]
    batch = body["content"]["application/json"]["schema"]["anyOf"][1]
    assert batch["maxItems"] == ingest.MAX_EVENTS_PER_REQUEST
    assert "1000 bytes per event" in body["description"]
    assert "4096 bytes in all" in body["description"]
    mark = document["components"]["schemas"]["MarkRead"]["properties"]["notification_ids"]
    assert mark["maxItems"] == inbox_live._MAX_IDS


def test_event_and_preferences_are_the_published_json_schemas() -> None:
    document = openapi_document()
    for component, name in (
        ("NotificationEvent", "notification_event"),
        ("UserPreferences", "user_preferences"),
    ):
        embedded = document["components"]["schemas"][component]
        original = load_schema(name)
        assert set(embedded["properties"]) == set(original["properties"])
        assert embedded["required"] == original["required"]
        assert embedded["$defs"].keys() == original["$defs"].keys()
    events = component_validator(document, "NotificationEvent")
    assert events.is_valid(event("e-1", "u-1"))
    assert events.is_valid(event("e-1", "u-1", channels=["email"], send_at="2024-05-01T09:30:00Z"))
    assert not events.is_valid(event("e-1", "u-1", priority="urgent"))
    assert not events.is_valid(event("e-1", "u-1", channels=["fax"]))
    prefs = component_validator(document, "UserPreferences")
    assert prefs.is_valid(preferences("u-1", quiet_hours={"start": "22:00", "end": "07:00"}))
    assert not prefs.is_valid(preferences("u-1", quiet_hours={"start": "25:00", "end": "07:00"}))


def test_every_route_of_the_worker_is_documented(tmp_path: Path) -> None:
    clarion = create_app(Settings.from_env({"CLARION_DATA_DIR": str(tmp_path)}))
    routes = {
        (route.method, route.resource.canonical)
        for route in clarion.app.web.web_app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    documented = {(method, path) for method, path, _ in operations(openapi_document())}
    assert (routes - UNDOCUMENTED_ROUTES) - documented == set(), "routes not in the document"
    assert documented - routes == set(), "documented operations the worker does not serve"


# --- Against a running worker ------------------------------------------------------------------

API_KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
USERS = ("ada", "grace")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Per operation and generation mode; with the explicit cases the run stays well under a minute.
MAX_EXAMPLES = 30


async def wait_for(
    session: aiohttp.ClientSession,
    url: str,
    ready: Callable[[int, Any], bool],
    *,
    what: str,
    deadline_s: float = 60.0,
) -> Any:
    """GET ``url`` until ``ready(status, body)``; fail with the last answer after the deadline."""
    deadline = time.monotonic() + deadline_s
    while True:
        async with session.get(url, headers=AUTH) as reply:
            status, body = reply.status, await reply.json(content_type=None)
        if ready(status, body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last answer {status}: {body}")
        await asyncio.sleep(0.2)  # polling interval of the deadline loop


async def seed(pipeline: Pipeline, base: str) -> dict[str, Any]:
    """Preferences and events for USERS; returns what the views show once they are routed."""
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.preferences,
        [preferences(user, channels=IN_APP_ONLY, caps={"in_app": 50}) for user in USERS],
    )
    await produce_json(
        pipeline.bootstrap,
        pipeline.topics.events,
        [
            *(
                event(f"now-{n}-{user}", user, priority="critical")
                for user in USERS
                for n in (1, 2)
            ),
            *(event(f"later-{user}", user, priority="low") for user in USERS),
        ],
    )
    seen: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        for user in USERS:
            listed = await wait_for(
                session,
                f"{base}/users/{user}/notifications",
                lambda s, b: s == 200 and sum(i["status"] == "sent" for i in b["items"]) == 2,
                what=f"notifications of {user}",
            )
            await wait_for(
                session,
                f"{base}/users/{user}/inbox",
                lambda s, b: s == 200 and b["unread"] == 2,
                what=f"inbox of {user}",
            )
            await wait_for(
                session,
                f"{base}/users/{user}/digests/pending",
                lambda s, b: s == 200 and b["digests"],
                what=f"pending digest of {user}",
            )
            seen[user] = listed
    return seen


def run_cases(schema: Any, seen: dict[str, Any], base: str) -> list[str]:
    """Explicit cases, then generated ones, for every operation; the failures found."""
    failures: list[str] = []
    session = requests.Session()
    notification_ids = [i["notification_id"] for body in seen.values() for i in body["items"]]
    event_ids = [f"now-1-{USERS[0]}", f"later-{USERS[1]}"]

    def call(case: Any, headers: dict[str, str] | None = None) -> Any:
        return case.call_and_validate(
            base_url=base,
            session=session,
            headers=AUTH if headers is None else headers,
            checks=CHECKS,
            timeout=15,
        )

    for result in schema.get_all_operations():
        operation = result.ok()
        label = operation.label
        path, method = operation.path, operation.method.upper()
        # (case, headers (None: with the key), the status expected (None: any documented))
        explicit: list[tuple[Any, dict[str, str] | None, int | None]] = []
        if "{user_id}" in path:
            explicit += [
                (operation.Case(path_parameters={"user_id": u}), None, None) for u in USERS
            ]
        elif "{notification_id}" in path:
            # Event-level statuses may still be on their way: any documented answer will do.
            explicit += [
                (operation.Case(path_parameters={"notification_id": i}), None, status)
                for ids, status in ((notification_ids, 200), (event_ids, None))
                for i in ids
            ]
        elif method == "GET" or path == "/internal/statuses":
            body = {"ids": [*notification_ids, "missing"]} if method == "POST" else None
            explicit.append((operation.Case(body=body) if body else operation.Case(), None, None))
        if path.endswith(("/notifications", "/inbox")):
            # Paging through real rows, and limits that once were 500s: 400 now.
            explicit += [
                (
                    operation.Case(path_parameters={"user_id": USERS[0]}, query={"limit": limit}),
                    None,
                    status,
                )
                for limit, status in ((1, 200), ("\u00b2", 400), ("9" * 5000, 400))
            ]
        if path == "/events":
            explicit.append((operation.Case(body=[event("api-1", USERS[0])]), None, 202))
        if operation.definition.raw.get("security"):
            # Without a key: 401, as documented.
            parameters = {"user_id": USERS[0]} if "{user_id}" in path else {}
            if "{notification_id}" in path:
                parameters = {"notification_id": "x"}
            explicit.append((operation.Case(path_parameters=parameters or None), {}, 401))

        for case, headers, expected in explicit:
            if path == STREAM and headers is None:
                continue  # a 200 here never ends; see check_inbox_stream
            what = f"{label} (explicit {case.path_parameters} {case.query} {case.body})"
            try:
                response = call(case, headers)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{what}: {exc}")
                continue
            if expected is not None and response.status_code != expected:
                failures.append(f"{what}: {response.status_code}, expected {expected}")

        if path == STREAM:
            continue
        modes = [schemathesis.GenerationMode.POSITIVE]
        if operation.query or operation.body:
            # Nothing to make invalid otherwise: an empty path parameter is no URL at all.
            modes.append(schemathesis.GenerationMode.NEGATIVE)
        for mode in modes:

            @hypothesis.settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
                phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def fuzz(case: Any) -> None:
                call(case)

            try:
                fuzz()
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{label} ({mode.value}): {exc}")
    return failures


@pytest.mark.integration
async def test_running_api_conforms_to_its_document(pipeline: Pipeline) -> None:
    worker = pipeline.worker(CLARION_API_KEYS=f"{API_KEY}:read+write").start()
    base = f"http://127.0.0.1:{worker.web_port}"
    async with aiohttp.ClientSession() as session:
        await wait_for(session, f"{base}/ready", lambda s, _: s == 200, what="the worker ready")
    seen = await seed(pipeline, base)

    config = schemathesis.Config.from_dict(
        # 503 is documented where it can happen (readiness, a partition moving, the broker
        # refusing events); status_code_conformance fails it anywhere else.
        {"checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]}}}
    )
    schema = await asyncio.to_thread(
        schemathesis.openapi.from_url, f"{base}{OPENAPI_PATH}", config=config, headers=AUTH
    )
    assert schema.raw_schema == orjson.loads(orjson.dumps(openapi_document()))

    failures = await asyncio.to_thread(run_cases, schema, seen, base)
    assert not failures, "\n\n".join(failures) + f"\n\nworker log:\n{worker.log()}"

    await check_inbox_stream(base, USERS[0])


async def check_inbox_stream(base: str, user: str) -> None:
    """The stream endpoint, not fuzzed: a 200 with text/event-stream of InboxItems."""
    validator = component_validator(openapi_document(), "InboxItem")
    url = f"{base}/users/{user}/inbox/stream"
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(url, headers=AUTH) as stream:
            assert stream.status == 200
            assert stream.content_type == "text/event-stream"
            fields: dict[str, str] = {}
            while "data" not in fields:
                line = (await stream.content.readline()).decode().rstrip("\n")
                if line and not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
            assert fields["event"] == "notification"
            assert fields["id"].isdigit()
            validator.validate(orjson.loads(fields["data"]))
        # A Last-Event-ID int() cannot read (it once was a 500) counts as none.
        for resume in ({"Last-Event-ID": "\u00b2"}, {"Last-Event-ID": "9" * 5000}):
            async with session.get(url, headers=AUTH | resume) as stream:
                assert (stream.status, stream.content_type) == (200, "text/event-stream")
        async with session.get(url) as refused:
            assert refused.status == 401
            assert set(await refused.json()) == {"error", "detail"}
