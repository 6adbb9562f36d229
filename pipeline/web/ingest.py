"""``POST /events``: events over HTTP, validated like the Kafka path and published to it.

The body is one event object or a JSON array of them, sent as ``application/json`` with
``Authorization: Bearer <key>`` of a key holding the ``write`` scope (see
:mod:`pipeline.web.auth`).

Validation is all-or-nothing: every event goes through :func:`schemas.validation.parse_event`,
the parser of the ingest agent, and if any is invalid the answer is 400 with one reason per
invalid event (``{"index", "event_id", "reason"}``) and nothing is published. Otherwise every
event is published to the events topic, keyed by its ``user_id``, by an idempotent producer
(acks=all); the answer, 202 ``{"accepted": [event_id, ...]}``, comes once the broker has them
all. From there the events take the same path as those written to the topic directly: a 202
means accepted for routing, not routed (duplicates are dropped by the ingest agent).

If the broker fails, the answer is 503 and part of the batch may already be published: send
the same batch again; the ingest agent drops the events whose ``event_id`` it has seen.

Limits: a body over ``CLARION_MAX_REQUEST_BYTES`` (8 MiB) or over 1000 events is refused with
413 (a declared Content-Length before reading anything, the bytes read otherwise, so a body is
never buffered past the limit); an event over ``CLARION_MAX_EVENT_BYTES`` is an invalid event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.web import View

from pipeline.web.auth import ApiKeys, api_keys_for, authorize
from pipeline.web.responses import JSON, error_response, json_response
from schemas.field_checks import describe
from schemas.validation import HoldHorizon, Invalid, encode_decoded, parse_event

if TYPE_CHECKING:
    from pipeline.app import Clarion

__all__ = [
    "MAX_EVENTS_PER_REQUEST",
    "BadRequest",
    "EventPublisher",
    "Parsed",
    "PublishError",
    "parse_body",
    "register_ingest_http",
]

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 1000
# How long a request waits for the broker before it gets a 503.
PUBLISH_TIMEOUT_S = 30.0
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Parsed:
    """A valid body: (key, value, event_id) of each event in order, as it will be published."""

    records: list[tuple[bytes, bytes, str]]


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A body that publishes nothing: the status (400 or 413) and the error body."""

    status: int
    error: str
    detail: object = None


def parse_body(
    body: bytes, *, max_event_bytes: int, horizon: HoldHorizon | None = None
) -> Parsed | BadRequest:
    """Validate a whole body: one event object or an array of at most 1000 of them."""
    if not body.strip():
        return BadRequest(400, "invalid body", "the body is empty; send an event or an array")
    decoded = _decode(body)
    if isinstance(decoded, BadRequest):
        return decoded
    items, values = decoded
    records: list[tuple[bytes, bytes, str]] = []
    problems: list[dict[str, object]] = []
    for index, (item, value) in enumerate(zip(items, values, strict=True)):
        event = (
            value
            if isinstance(value, Invalid)
            else parse_event(value, max_bytes=max_event_bytes, horizon=horizon)
        )
        if isinstance(event, Invalid):
            event_id = item.get("event_id") if isinstance(item, dict) else None
            problems.append(
                {
                    "index": index,
                    "event_id": event_id if isinstance(event_id, str) else None,
                    "reason": event.reason,
                }
            )
        else:
            assert not isinstance(value, Invalid)  # a valid event was encoded
            records.append((event.user_id.encode(), value, event.event_id))
    if problems:
        return BadRequest(400, "invalid events", problems)
    return Parsed(records=records)


def _decode(body: bytes) -> tuple[Sequence[Any], Sequence[bytes | Invalid]] | BadRequest:
    """The decoded events and the bytes each is validated and published as."""
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return BadRequest(400, "invalid JSON", str(exc))
    if isinstance(decoded, dict):
        # A single event is validated and published as sent, exactly as on the Kafka path.
        return [decoded], [body]
    if not isinstance(decoded, list):
        return BadRequest(
            400,
            "invalid body",
            f"the body must be an event object or an array of events (got {describe(decoded)})",
        )
    if not decoded:
        return BadRequest(400, "invalid body", "the array holds no events")
    if len(decoded) > MAX_EVENTS_PER_REQUEST:
        return BadRequest(
            413,
            "too many events",
            f"{len(decoded)} events; at most {MAX_EVENTS_PER_REQUEST} per request",
        )
    return decoded, [encode_decoded(item) for item in decoded]


class PublishError(Exception):
    """The broker did not take every event; part of them may be published."""


@dataclass(kw_only=True)
class EventPublisher:
    """An idempotent producer (acks=all) to the events topic, started on first use.

    aiokafka's default partitioner is the Java client's murmur2, so an event lands on the
    partition of its user_id like one written by any other producer.
    """

    bootstrap_servers: str
    topic: str
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout: float = PUBLISH_TIMEOUT_S
    _producer: AIOKafkaProducer | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _closed: bool = False

    async def publish(self, records: Sequence[tuple[bytes, bytes, str]]) -> None:
        """Return once the broker acknowledged every record; raise :class:`PublishError`."""
        try:
            await asyncio.wait_for(self._publish(records), self.timeout)
        except PublishError:
            raise
        except (KafkaError, OSError, TimeoutError) as exc:
            raise PublishError(_describe(exc)) from exc

    async def _publish(self, records: Sequence[tuple[bytes, bytes, str]]) -> None:
        producer = await self._started()
        sent = [await producer.send(self.topic, value, key=key) for key, value, _ in records]
        await asyncio.gather(*sent)

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._closed:
                raise PublishError("the worker is shutting down")
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    client_id="clarion-http-ingest",
                    acks="all",
                    enable_idempotence=True,
                    **self.options,
                )
                try:
                    await producer.start()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    raise
                self._producer = producer
            return self._producer

    async def stop(self) -> None:
        async with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(KafkaError, OSError):
                await producer.stop()


def register_ingest_http(clarion: Clarion, keys: ApiKeys | None = None) -> EventPublisher:
    """Add ``POST /events`` to the worker's web server; the producer stops with the app."""
    app = clarion.app
    api_keys = keys if keys is not None else api_keys_for(clarion)
    max_event_bytes = clarion.settings.max_event_bytes
    limit = clarion.settings.max_request_bytes
    publisher = EventPublisher(
        bootstrap_servers=clarion.settings.bootstrap_servers,
        topic=clarion.topics.events,
        options=dict(clarion.settings.kafka_options),
    )

    async def read_body(request: Any) -> bytes | BadRequest:
        """The body of a JSON request; reading stops at the limit."""
        if not _is_json(request.content_type):
            return BadRequest(
                400,
                "unsupported content type",
                f"send application/json, not {request.content_type!r}",
            )
        charset = (request.charset or "utf-8").lower()
        if charset not in {"utf-8", "utf8"}:
            return BadRequest(400, "unsupported charset", f"send UTF-8 JSON, not {charset!r}")
        too_large = BadRequest(
            413,
            "body too large",
            f"at most {limit} bytes per request (CLARION_MAX_REQUEST_BYTES)",
        )
        declared = request.content_length
        if declared is not None and declared > limit:
            return too_large
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(_READ_CHUNK):
            size += len(chunk)
            if size > limit:
                return too_large
            chunks.append(chunk)
        return b"".join(chunks)

    @app.page("/events")
    class Events(View):
        """POST one event or an array of events; see :mod:`pipeline.web.ingest`."""

        async def get(self, request: Any) -> Any:
            # Behind the key like POST: without one, a client learns nothing of the route.
            if (refused := await authorize(api_keys, self, request, "write")) is not None:
                return refused
            return self.bytes(
                orjson.dumps(
                    {"error": "method not allowed", "detail": "send events with POST /events"}
                ),
                content_type=JSON,
                status=405,
                headers={"Allow": "POST"},
            )

        async def post(self, request: Any) -> Any:
            if (refused := await authorize(api_keys, self, request, "write")) is not None:
                return refused
            body = await read_body(request)
            if isinstance(body, BadRequest):
                return error_response(self, body.status, body.error, body.detail)
            horizon = HoldHorizon(now=clarion.clock(), max_hold=clarion.settings.max_hold)
            parsed = parse_body(body, max_event_bytes=max_event_bytes, horizon=horizon)
            if isinstance(parsed, BadRequest):
                return error_response(self, parsed.status, parsed.error, parsed.detail)
            try:
                await publisher.publish(parsed.records)
            except PublishError as exc:
                logger.warning(
                    "POST /events: %d events not published: %s", len(parsed.records), exc
                )
                return self.bytes(
                    orjson.dumps(
                        {
                            "error": "broker unavailable",
                            "detail": (
                                f"could not publish to {publisher.topic}: {exc}; part of the "
                                "events may be published: send them again (the same "
                                "event_ids are dropped as duplicates)"
                            ),
                        }
                    ),
                    content_type=JSON,
                    status=503,
                    headers={"Retry-After": "5"},
                )
            return json_response(
                self, {"accepted": [event_id for _, _, event_id in parsed.records]}, status=202
            )

    # mode's signal handler type (VarArg/NamedArg) has no spelling mypy accepts here.
    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_publisher(_sender: Any, *_: Any, signal: Any, **__: Any) -> None:  # noqa: ARG001
        await publisher.stop()

    return publisher


def _is_json(content_type: str) -> bool:
    # aiohttp gives the media type without parameters, lower-cased; a missing header is
    # application/octet-stream.
    return content_type == JSON or (
        content_type.startswith("application/") and content_type.endswith("+json")
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the broker did not acknowledge in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
