"""The OpenAPI 3.1 description of the worker's HTTP API, served at ``GET /openapi.json``.

The document is built here as a plain dict. Event and preference bodies are the JSON Schemas
in ``schemas/jsonschema/`` (OpenAPI 3.1 schemas are JSON Schema 2020-12), embedded under
``components/schemas`` with their internal ``#/$defs/...`` references rewritten to point into
the embedding document, so any OpenAPI tool resolves them without following ``$id``.

Keep it in step with the views (``pipeline/web/*.py``): ``tests/pipeline/web/test_openapi.py``
fails when a route is not documented, and fuzzes the running API against this document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.web.auth import authorize
from schemas.json_schema import load_schema

if TYPE_CHECKING:
    from pipeline.app import Clarion

__all__ = ["OPENAPI_PATH", "openapi_document", "register_openapi"]

OPENAPI_PATH = "/openapi.json"
DEFAULT_MAX_EVENT_BYTES = 65536
DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
# Kept in step with pipeline.web.ingest.MAX_EVENTS_PER_REQUEST, pipeline.web.views.MAX_LIMIT
# and DEFAULT_LIMIT, and pipeline.web.inbox_live._MAX_IDS (the test checks them).
MAX_EVENTS_PER_REQUEST = 1000
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
MAX_READ_MARK_IDS = 1000

_JSON = "application/json"
_SCHEMAS = "#/components/schemas/"
_RESPONSES = "#/components/responses/"
_PARAMETERS = "#/components/parameters/"
_RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 0},
}

_SECURITY_TEXT = """\
Send `Authorization: Bearer <key>` with a key from `CLARION_API_KEYS`, a comma list of
`key:scope` entries (a key may also be given as `sha256=<hex digest>`). Scopes:

* `read`: the table views (`GET /users/...`, `GET /notifications/...`), the inbox stream,
  this document and the worker-to-worker `POST /internal/statuses`;
* `write`: `POST /events` and `POST /users/{user_id}/inbox/read`.

A key holding `read+write` (or listed twice) has both. Without a key, or with an unknown
one, the answer is 401 with a `WWW-Authenticate` header; with a key lacking the scope, 403.

When `CLARION_API_KEYS` is unset the worker has no keys and answers loopback clients only
(127.0.0.0/8, ::1) without an `Authorization` header; other clients get 403. `/health`,
`/ready` and `/metrics` never need a key; Faust's own views (`/table`, `/router`, statistics)
are not served."""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _SCHEMAS + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {_JSON: {"schema": schema}}


def _embedded(name: str, component: str) -> dict[str, Any]:
    """A JSON Schema of ``schemas/jsonschema`` as the component ``component``."""
    schema = load_schema(name)
    schema.pop("$schema", None)  # the document's dialect (JSON Schema 2020-12) applies
    local, embedded = "#/$defs/", f"{_SCHEMAS}{component}/$defs/"

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (
                    embedded + value.removeprefix(local)
                    if key == "$ref" and isinstance(value, str) and value.startswith(local)
                    else rewrite(value)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    result: dict[str, Any] = rewrite(schema)
    return result


def _components_schemas() -> dict[str, Any]:
    status_defs = load_schema("status_change")["$defs"]
    timestamp = {
        "description": "RFC 3339 (ISO-8601) date and time with a UTC offset.",
        "type": "string",
        "format": "date-time",
    }
    string_list = {"type": "array", "items": {"type": "string"}}
    return {
        "Error": {
            "description": "Every error the API itself answers with has this shape.",
            "type": "object",
            "required": ["error", "detail"],
            "properties": {
                "error": {"description": "What went wrong, in a few words.", "type": "string"},
                "detail": {
                    "description": (
                        "More about it: usually a sentence; for POST /events with invalid "
                        "events, one EventProblem per invalid event; may be null."
                    )
                },
            },
        },
        "EventProblem": {
            "description": "Why one event of a POST /events body is invalid.",
            "type": "object",
            "required": ["index", "event_id", "reason"],
            "properties": {
                "index": {
                    "description": "Position of the event in the body (0 for a single event).",
                    "type": "integer",
                    "minimum": 0,
                },
                "event_id": {
                    "description": "The event's event_id, when it has a string one.",
                    "type": ["string", "null"],
                },
                "reason": {"type": "string"},
            },
        },
        "InvalidEvents": {
            "description": (
                "400 from POST /events. `error` is `invalid events` (detail: an EventProblem "
                "per invalid event), `invalid JSON`, `invalid body`, `unsupported content type`"
                " or `unsupported charset` (detail: a sentence)."
            ),
            "allOf": [
                _ref("Error"),
                {
                    "properties": {
                        "detail": {
                            "anyOf": [
                                {"type": "string"},
                                {"type": "array", "items": _ref("EventProblem")},
                            ]
                        }
                    }
                },
            ],
        },
        "NotificationEvent": _embedded("notification_event", "NotificationEvent"),
        "UserPreferences": _embedded("user_preferences", "UserPreferences"),
        "Channel": {"enum": status_defs["channel"]["enum"]},
        "Priority": {"enum": ["critical", "high", "normal", "low"]},
        "Status": {
            "description": "A status of the contract (see StatusChange in the README).",
            "enum": status_defs["status"]["enum"],
        },
        "Timestamp": timestamp,
        "Accepted": {
            "type": "object",
            "required": ["accepted"],
            "properties": {
                "accepted": {
                    "description": "The event_ids published, in the order sent.",
                    **string_list,
                }
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["ready", "checks", "partitions", "store_partitions"],
            "properties": {
                "ready": {"description": "All checks pass.", "type": "boolean"},
                "checks": {
                    "description": "Each readiness check and whether it passes.",
                    "type": "object",
                    "required": [
                        "consumer_started",
                        "broker_reachable",
                        "tables_recovered",
                        "timers_recovered",
                    ],
                    "properties": {
                        "consumer_started": {
                            "description": (
                                "The runtimes of the worker's roles have started (they start "
                                "after the web server)."
                            ),
                            "type": "boolean",
                        },
                        "broker_reachable": {
                            "description": "The broker answered a metadata request recently.",
                            "type": "boolean",
                        },
                        "tables_recovered": {
                            "description": (
                                "The store runtime (status histories, inboxes) holds every "
                                "partition assigned to it."
                            ),
                            "type": "boolean",
                        },
                        "timers_recovered": {
                            "description": (
                                "The route runtime (timers, dedupe, preferences) holds every "
                                "partition assigned to it."
                            ),
                            "type": "boolean",
                        },
                    },
                    "additionalProperties": {"type": "boolean"},
                },
                "partitions": {
                    "description": "Partitions of the events topic this worker routes.",
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0},
                },
                "store_partitions": {
                    "description": (
                        "Partitions of the status and in-app topics this worker stores."
                    ),
                    "type": "array",
                    "items": {"type": "integer", "minimum": 0},
                },
            },
        },
        "NotificationSummary": {
            "description": "One notification (a delivery on one channel) created for the user.",
            "type": "object",
            "required": [
                "notification_id",
                "channel",
                "subject",
                "event_ids",
                "priority",
                "category",
                "created_at",
                "status",
            ],
            "properties": {
                "notification_id": {"type": "string"},
                "channel": _ref("Channel"),
                "subject": {"type": ["string", "null"]},
                "event_ids": {
                    "description": "The events it carries: more than one for a digest.",
                    **string_list,
                },
                "priority": _ref("Priority"),
                "category": {"type": "string"},
                "created_at": _ref("Timestamp"),
                "status": {
                    "description": "Its latest status; null when not known (yet).",
                    **_nullable(_ref("Status")),
                },
            },
        },
        "NotificationPage": {
            "type": "object",
            "required": ["user_id", "items", "next_cursor"],
            "properties": {
                "user_id": {"type": "string"},
                "items": {
                    "description": "Newest first.",
                    "type": "array",
                    "items": _ref("NotificationSummary"),
                },
                "next_cursor": {
                    "description": "Pass as `cursor` for the next page; null on the last page.",
                    "type": ["string", "null"],
                },
            },
        },
        "StatusEntry": {
            "type": "object",
            "required": ["status", "reason", "at"],
            "properties": {
                "status": _ref("Status"),
                "reason": {"type": ["string", "null"]},
                "at": _ref("Timestamp"),
            },
        },
        "StoredStatusHistory": {
            "description": "The statuses of one notification, in arrival order (at most 50).",
            "type": "object",
            "required": ["notification_id", "user_id", "channel", "event_ids", "entries"],
            "properties": {
                "notification_id": {"type": "string"},
                "user_id": {"type": ["string", "null"]},
                "channel": _nullable(_ref("Channel")),
                "event_ids": string_list,
                "entries": {"type": "array", "items": _ref("StatusEntry")},
            },
        },
        "StatusHistory": {
            "allOf": [
                _ref("StoredStatusHistory"),
                {
                    "type": "object",
                    "required": ["status"],
                    "properties": {
                        "status": {
                            "description": "The status that arrived last.",
                            **_nullable(_ref("Status")),
                        }
                    },
                },
            ]
        },
        "InboxItem": {
            "type": "object",
            "required": [
                "notification_id",
                "subject",
                "body",
                "category",
                "priority",
                "created_at",
                "delivered_at",
                "read_at",
                "event_ids",
            ],
            "properties": {
                "notification_id": {"type": "string"},
                "subject": {"type": ["string", "null"]},
                "body": {"type": "string"},
                "category": {"type": "string"},
                "priority": _ref("Priority"),
                "created_at": _ref("Timestamp"),
                "delivered_at": _ref("Timestamp"),
                "read_at": {
                    "description": "When it was first marked read; null while unread.",
                    **_nullable(_ref("Timestamp")),
                },
                "event_ids": string_list,
            },
        },
        "InboxPage": {
            "type": "object",
            "required": ["user_id", "unread", "items", "next_cursor"],
            "properties": {
                "user_id": {"type": "string"},
                "unread": {
                    "description": "Unread items in the whole inbox.",
                    "type": "integer",
                    "minimum": 0,
                },
                "items": {
                    "description": "Newest (latest delivered) first.",
                    "type": "array",
                    "items": _ref("InboxItem"),
                },
                "next_cursor": {
                    "description": "Pass as `cursor` for the next page; null on the last page.",
                    "type": ["string", "null"],
                },
            },
        },
        "PendingDigest": {
            "description": "A digest window still collecting (or waiting to be sent).",
            "type": "object",
            "required": ["window_start", "window_end", "due", "count", "event_ids", "channels"],
            "properties": {
                "window_start": _ref("Timestamp"),
                "window_end": _ref("Timestamp"),
                "due": {
                    "description": "When it is sent (the window end, later in quiet hours).",
                    **_ref("Timestamp"),
                },
                "count": {"type": "integer", "minimum": 0},
                "event_ids": string_list,
                "channels": {"type": "array", "items": _ref("Channel")},
            },
        },
        "PendingDigests": {
            "type": "object",
            "required": ["user_id", "digests"],
            "properties": {
                "user_id": {"type": "string"},
                "digests": {"type": "array", "items": _ref("PendingDigest")},
            },
        },
        "MarkRead": {
            "description": (
                "Which inbox items to mark read. An empty body, `{}` or a null "
                "`notification_ids` marks every item read."
            ),
            "type": "object",
            "properties": {
                "notification_ids": {
                    "type": ["array", "null"],
                    "items": {"type": "string"},
                    "maxItems": MAX_READ_MARK_IDS,
                }
            },
        },
        "MarkReadAccepted": {
            "type": "object",
            "required": ["user_id", "marking"],
            "properties": {
                "user_id": {"type": "string"},
                "marking": {
                    "description": "The notification_ids being marked, or `all`.",
                    "anyOf": [string_list, {"const": "all"}],
                },
            },
        },
        "StatusLookup": {
            "type": "object",
            "required": ["ids"],
            "properties": {
                "ids": {"description": "Notification ids.", **string_list},
            },
        },
        "StatusHistories": {
            "description": "The histories this worker holds, by notification_id; others left out.",
            "type": "object",
            "additionalProperties": _ref("StoredStatusHistory"),
        },
    }


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": _json_content(_ref("Error"))}
    if headers:
        response["headers"] = headers
    return response


def _components_responses() -> dict[str, Any]:
    return {
        "BadRequest": _error("A query parameter or the body is invalid; `detail` says how."),
        "Unauthorized": _error(
            "No valid API key: the `Authorization: Bearer <key>` header is missing, malformed "
            "or names an unknown key.",
            {
                "WWW-Authenticate": {
                    "description": 'The challenge: `Bearer realm="clarion"`.',
                    "schema": {"type": "string"},
                }
            },
        ),
        "Forbidden": _error(
            "The key lacks the scope the operation needs, or (without configured keys) the "
            "client is not on a loopback address."
        ),
        "NotFound": _error("Nothing is recorded under this key."),
        "TooLarge": _error("The body is over `CLARION_MAX_REQUEST_BYTES`; nothing was done."),
        "OwnerUnreachable": _error(
            "Another worker holds the key and could not be reached to answer the request."
        ),
        "PartitionMoving": _error(
            "The key's partition has no owner right now (a rebalance is under way); retry.",
            {"Retry-After": _RETRY_AFTER},
        ),
    }


def _components_parameters() -> dict[str, Any]:
    return {
        "UserId": {
            "name": "user_id",
            "in": "path",
            "required": True,
            "description": "The user, as in events and preferences (percent-encoded).",
            "schema": {"type": "string", "minLength": 1},
        },
        "Limit": {
            "name": "limit",
            "in": "query",
            "required": False,
            "description": "Page size.",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_PAGE_SIZE,
                "default": DEFAULT_PAGE_SIZE,
            },
        },
        "Cursor": {
            "name": "cursor",
            "in": "query",
            "required": False,
            "description": "`next_cursor` of the previous page; leave out for the first page.",
            "schema": {"type": "string"},
        },
    }


def _read_view(
    *,
    summary: str,
    description: str,
    schema: str,
    parameters: list[str],
    not_found: bool = False,
    bad_request: bool = False,
) -> dict[str, Any]:
    """A GET table view: answered by the worker holding the key, read scope."""
    responses: dict[str, Any] = {
        "200": {"description": "Found.", "content": _json_content(_ref(schema))},
    }
    if bad_request:
        responses["400"] = {"$ref": _RESPONSES + "BadRequest"}
    responses["401"] = {"$ref": _RESPONSES + "Unauthorized"}
    responses["403"] = {"$ref": _RESPONSES + "Forbidden"}
    if not_found:
        responses["404"] = {"$ref": _RESPONSES + "NotFound"}
    responses["502"] = {"$ref": _RESPONSES + "OwnerUnreachable"}
    responses["503"] = {"$ref": _RESPONSES + "PartitionMoving"}
    return {
        "tags": ["views"],
        "summary": summary,
        "description": description
        + "\n\nAny worker answers: a worker that does not hold the key forwards the request "
        "to the one that does and returns its answer.",
        "parameters": [{"$ref": _PARAMETERS + name} for name in parameters],
        "security": _security("read"),
        "responses": responses,
    }


def _security(scope: str) -> list[dict[str, list[str]]]:
    # {} : no key needed when CLARION_API_KEYS is unset and the client is on loopback.
    return [{"bearerAuth": [scope]}, {}]


def _paths(max_event_bytes: int, max_body: int) -> dict[str, Any]:
    return {
        "/health": {
            "get": {
                "tags": ["operations"],
                "summary": "Liveness",
                "description": "Answers 200 while the worker process runs.",
                "security": [],
                "responses": {
                    "200": {"description": "Alive.", "content": _json_content(_ref("Health"))}
                },
            }
        },
        "/ready": {
            "get": {
                "tags": ["operations"],
                "summary": "Readiness",
                "description": (
                    "Ready means: Faust's consumer has started, the broker answered a "
                    "metadata request recently, no "
                    "rebalance is under way, Faust's table recovery has completed and the "
                    "timers table holds every assigned partition."
                ),
                "security": [],
                "responses": {
                    "200": {"description": "Ready.", "content": _json_content(_ref("Readiness"))},
                    "503": {
                        "description": "Not ready; `checks` says what is missing.",
                        "content": _json_content(_ref("Readiness")),
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "tags": ["operations"],
                "summary": "Prometheus metrics",
                "description": "The worker's metrics in the Prometheus text exposition format.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Metrics.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "tags": ["operations"],
                "summary": "This document",
                "security": _security("read"),
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 description of the API.",
                        "content": _json_content({"type": "object"}),
                    },
                    "401": {"$ref": _RESPONSES + "Unauthorized"},
                    "403": {"$ref": _RESPONSES + "Forbidden"},
                },
            }
        },
        "/events": {
            "post": {
                "tags": ["events"],
                "summary": "Publish events",
                "description": (
                    "One NotificationEvent or a JSON array of 1 to "
                    f"{MAX_EVENTS_PER_REQUEST}, validated like events written to the events "
                    "topic and published there keyed by user_id. All or nothing: if any event "
                    "is invalid, none is published (400). 202 means accepted for routing: "
                    "duplicates (same event_id or dedupe_key) are dropped later, with status "
                    "`duplicate`.\n\nAfter a 503 part of the batch may be published: send the "
                    "same batch again."
                ),
                "security": _security("write"),
                "requestBody": {
                    "required": True,
                    "description": (
                        f"At most {max_event_bytes} bytes per event (CLARION_MAX_EVENT_BYTES) "
                        f"and {max_body} bytes in all (CLARION_MAX_REQUEST_BYTES); UTF-8 JSON."
                    ),
                    "content": _json_content(
                        {
                            "anyOf": [
                                _ref("NotificationEvent"),
                                {
                                    "type": "array",
                                    "items": _ref("NotificationEvent"),
                                    "minItems": 1,
                                    "maxItems": MAX_EVENTS_PER_REQUEST,
                                },
                            ]
                        }
                    ),
                },
                "responses": {
                    "202": {
                        "description": "Every event was published.",
                        "content": _json_content(_ref("Accepted")),
                    },
                    "400": {
                        "description": "Invalid JSON, body or events; nothing was published.",
                        "content": _json_content(_ref("InvalidEvents")),
                    },
                    "401": {"$ref": _RESPONSES + "Unauthorized"},
                    "403": {"$ref": _RESPONSES + "Forbidden"},
                    "413": _error(
                        f"The body is over {max_body} bytes or holds over "
                        f"{MAX_EVENTS_PER_REQUEST} events; nothing was published."
                    ),
                    "503": _error(
                        "The broker did not take every event; part of them may be published. "
                        "Send the same batch again.",
                        {"Retry-After": _RETRY_AFTER},
                    ),
                },
            }
        },
        "/users/{user_id}/preferences": {
            "get": _read_view(
                summary="A user's preferences",
                description="The preferences last published for the user, with defaults filled.",
                schema="UserPreferences",
                parameters=["UserId"],
                not_found=True,
            )
        },
        "/users/{user_id}/notifications": {
            "get": _read_view(
                summary="A user's notifications",
                description=(
                    "The notifications (one per delivery channel, digests included) created "
                    "for the user, newest first, each with its latest status."
                ),
                schema="NotificationPage",
                parameters=["UserId", "Limit", "Cursor"],
                bad_request=True,
            )
        },
        "/notifications/{notification_id}": {
            "get": _read_view(
                summary="A notification's status history",
                description=(
                    "Every status recorded for the notification (or, for statuses about a "
                    "whole event such as `accepted` or `duplicate`, the event_id)."
                ),
                schema="StatusHistory",
                parameters=[],
                not_found=True,
            )
            | {
                "parameters": [
                    {
                        "name": "notification_id",
                        "in": "path",
                        "required": True,
                        "description": "A notification_id, or an event_id (percent-encoded).",
                        "schema": {"type": "string", "minLength": 1},
                    }
                ]
            }
        },
        "/users/{user_id}/inbox": {
            "get": _read_view(
                summary="A user's in-app inbox",
                description=(
                    "In-app notifications, latest delivered first, and the unread count. "
                    "The inbox keeps the latest `CLARION_INBOX_SIZE` items (200 by default). "
                    "An item's body is cut at 64 KiB and its subject at 1 KiB (both then end "
                    "with `…`); it lists at most 100 `event_ids`."
                ),
                schema="InboxPage",
                parameters=["UserId", "Limit", "Cursor"],
                bad_request=True,
            )
        },
        "/users/{user_id}/digests/pending": {
            "get": _read_view(
                summary="A user's pending digests",
                description="Digest windows collecting low-priority events, not yet sent.",
                schema="PendingDigests",
                parameters=["UserId"],
            )
        },
        "/users/{user_id}/inbox/read": {
            "post": {
                "tags": ["inbox"],
                "summary": "Mark inbox items read",
                "description": (
                    "Publishes a read mark; the worker holding the user applies it to the "
                    "inbox shortly after (202). An item already read keeps its first read_at."
                ),
                "parameters": [{"$ref": _PARAMETERS + "UserId"}],
                "security": _security("write"),
                "requestBody": {
                    "required": False,
                    "content": _json_content(_ref("MarkRead")),
                },
                "responses": {
                    "202": {
                        "description": "The read mark is published.",
                        "content": _json_content(_ref("MarkReadAccepted")),
                    },
                    "400": {"$ref": _RESPONSES + "BadRequest"},
                    "401": {"$ref": _RESPONSES + "Unauthorized"},
                    "403": {"$ref": _RESPONSES + "Forbidden"},
                    "413": {"$ref": _RESPONSES + "TooLarge"},
                    "503": _error("The broker did not take the read mark; retry."),
                },
            }
        },
        "/users/{user_id}/inbox/stream": {
            "get": {
                "tags": ["inbox"],
                "summary": "Stream new inbox items (Server-Sent Events)",
                "description": (
                    "A `text/event-stream` of inbox items: first the stored ones newer than "
                    "`Last-Event-ID` (all of them without it), oldest first, then live ones. "
                    "Each event is `id: <seq>`, `event: notification`, `data: <InboxItem "
                    "JSON>`; a `: keepalive` comment comes every 15 s. The server ends the "
                    "stream when the client falls too far behind or the partition moves: "
                    "reconnect with `Last-Event-ID` to resume. A worker that does not hold "
                    "the user redirects (307) to the one that does."
                ),
                "parameters": [
                    {"$ref": _PARAMETERS + "UserId"},
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "description": "The `id` of the last event received; resume after it.",
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    },
                    {
                        "name": "last_event_id",
                        "in": "query",
                        "required": False,
                        "description": "The same as `Last-Event-ID`, for clients that cannot "
                        "set headers (the header wins).",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                "security": _security("read"),
                "responses": {
                    "200": {
                        "description": "The event stream.",
                        "content": {
                            "text/event-stream": {
                                "schema": {
                                    "description": "Server-Sent Events; the `data` of each "
                                    "`notification` event is an InboxItem (x-sse-data).",
                                    "type": "string",
                                },
                                "x-sse-data": _ref("InboxItem"),
                            }
                        },
                    },
                    "307": {
                        "description": "Another worker holds the user: connect there.",
                        "headers": {
                            "Location": {
                                "description": "The same request on the owning worker.",
                                "schema": {"type": "string", "format": "uri"},
                            }
                        },
                    },
                    "401": {"$ref": _RESPONSES + "Unauthorized"},
                    "403": {"$ref": _RESPONSES + "Forbidden"},
                    "503": _error("The user's partition has no owner right now; retry."),
                },
            }
        },
        "/internal/statuses": {
            "post": {
                "tags": ["internal"],
                "summary": "Status histories held by this worker (internal)",
                "description": (
                    "Internal: workers call it on each other to fill the statuses of "
                    "`GET /users/{user_id}/notifications`. Not part of the public contract; "
                    "it may change without notice. Answers from this worker's own tables only "
                    "(no forwarding): ids it does not hold are left out."
                ),
                "x-internal": True,
                "security": _security("read"),
                "requestBody": {
                    "required": True,
                    "content": _json_content(_ref("StatusLookup")),
                },
                "responses": {
                    "200": {
                        "description": "The histories found.",
                        "content": _json_content(_ref("StatusHistories")),
                    },
                    "400": {"$ref": _RESPONSES + "BadRequest"},
                    "401": {"$ref": _RESPONSES + "Unauthorized"},
                    "403": {"$ref": _RESPONSES + "Forbidden"},
                    "413": {"$ref": _RESPONSES + "TooLarge"},
                },
            }
        },
    }


def openapi_document(
    *,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the web API, as a fresh dict."""
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Clarion worker API",
            "version": "1",
            "description": (
                "The HTTP API of a Clarion worker (Faust web server, `CLARION_WEB_PORT`, "
                "default 6066): health, metrics, event ingest and table views. JSON "
                'everywhere; errors are `{"error": "...", "detail": ...}`. Requests about a '
                "user or notification can go to any worker.\n\n" + _SECURITY_TEXT
            ),
        },
        "servers": [{"url": "/", "description": "The worker serving this document."}],
        "tags": [
            {"name": "operations", "description": "Health, readiness, metrics."},
            {"name": "events", "description": "Event ingest over HTTP."},
            {"name": "views", "description": "Read-only views of the pipeline's tables."},
            {"name": "inbox", "description": "The in-app inbox: read marks and live stream."},
            {"name": "internal", "description": "Between workers; not for clients."},
        ],
        "security": [{"bearerAuth": []}, {}],
        "paths": _paths(max_event_bytes, max_request_bytes),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": _SECURITY_TEXT,
                }
            },
            "schemas": _components_schemas(),
            "responses": _components_responses(),
            "parameters": _components_parameters(),
        },
    }


def register_openapi(clarion: Clarion) -> Callable[..., Any]:
    """Serve the document at ``GET /openapi.json`` (the ``read`` scope)."""
    body = orjson.dumps(
        openapi_document(
            max_event_bytes=clarion.settings.max_event_bytes,
            max_request_bytes=clarion.settings.max_request_bytes,
        )
    )

    @clarion.app.page(OPENAPI_PATH)
    async def openapi(web: Any, request: Any) -> Any:
        if (refused := await authorize(clarion, web, request, "read")) is not None:
            return refused
        return web.bytes(body, content_type=_JSON)

    return openapi
