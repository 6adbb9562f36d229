"""Turning the bytes of a Kafka message into a record, or into the reasons it cannot be one.

Both parsers run once per message on the hot path and never raise: whatever a producer
writes ends up either as a record or as an :class:`Invalid` for the invalid topic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from schemas.event_checks import event_problems
from schemas.field_checks import MAX_NESTING, check_nesting, describe, nesting_depth
from schemas.hold_horizon import HoldHorizon
from schemas.preference_checks import preference_problems
from schemas.records import NotificationEvent, UserPreferences
from schemas.timestamps import parse_timestamp

__all__ = [
    "HoldHorizon",
    "Invalid",
    "encode_decoded",
    "parse_event",
    "parse_preferences",
    "parse_timestamp",
]


@dataclass(frozen=True, slots=True)
class Invalid:
    reason: str


def parse_event(
    raw: bytes | None, *, max_bytes: int, horizon: HoldHorizon | None = None
) -> NotificationEvent | Invalid:
    """``horizon``: how far ahead ``send_at`` and ``expires_at`` may be (unchecked if None)."""
    try:
        return _parse_event(raw, max_bytes, horizon)
    except Exception as exc:  # noqa: BLE001 -- one poison message must not stop the agent
        return _unexpected(exc)


def parse_preferences(raw: bytes, *, max_bytes: int) -> UserPreferences | Invalid:
    try:
        return _parse_preferences(raw, max_bytes)
    except Exception as exc:  # noqa: BLE001 -- one poison message must not stop the agent
        return _unexpected(exc)


def encode_decoded(value: Any, *, what: str = "event") -> bytes | Invalid:
    """The bytes a decoded JSON value is validated (and published) as, or why there are none.

    orjson decodes 1024 levels of nesting but encodes only 254, so a value decoded from a
    larger body (an array of events) is checked for depth before it is encoded again, with
    the reason its parser would give.
    """
    if isinstance(value, dict):
        problems: list[str] = []
        check_nesting(value, problems)
        if problems:
            return Invalid("; ".join(problems))
    elif nesting_depth(value) > MAX_NESTING:
        return Invalid(f"{what} must be a JSON object (got {describe(value)})")
    return orjson.dumps(value)


def _parse_event(
    raw: bytes | None, max_bytes: int, horizon: HoldHorizon | None
) -> NotificationEvent | Invalid:
    obj = _load_object(
        raw,
        max_bytes=max_bytes,
        what="event",
        size_subject="event is",
        empty_reason="value is empty (tombstones are only allowed on the preferences topic)",
    )
    if isinstance(obj, Invalid):
        return obj
    assert raw is not None  # it decoded to an object
    # No field nests deeper than the text has brackets: most events need no walk of their data.
    shallow = raw.count(b"{") + raw.count(b"[") <= MAX_NESTING
    if problems := event_problems(obj, horizon, shallow=shallow):
        return Invalid("; ".join(problems))
    return checked_event(obj)


# Every optional field of an event, at its default: what ``from_data`` would fill in.
_EVENT_DEFAULTS: dict[str, Any] = {
    name: field.default
    for name, field in NotificationEvent._options.descriptors.items()
    if not field.required
}


def checked_event(obj: dict[str, Any]) -> NotificationEvent:
    """The event ``obj`` holds, once :func:`event_problems` found nothing wrong with it.

    Built without faust's per-field descriptors, which would check again the types just
    checked and cost more than the rest of the validation (``from_data`` is the reference:
    tests/schemas/test_validation.py compares the two).
    """
    event: NotificationEvent = NotificationEvent.__new__(NotificationEvent)
    event.__dict__.update({"__evaluated_fields__": set(), **_EVENT_DEFAULTS, **obj})
    return event


def _parse_preferences(raw: bytes, max_bytes: int) -> UserPreferences | Invalid:
    obj = _load_object(
        raw,
        max_bytes=max_bytes,
        what="preferences",
        size_subject="preferences are",
        # A real tombstone is a null value, which callers handle before parsing.
        empty_reason="value is empty (to delete a user's preferences, send a null value)",
    )
    if isinstance(obj, Invalid):
        return obj
    if problems := preference_problems(obj):
        return Invalid("; ".join(problems))
    preferences: UserPreferences = UserPreferences.from_data(obj)
    return preferences


def _load_object(
    raw: bytes | None, *, max_bytes: int, what: str, size_subject: str, empty_reason: str
) -> dict[str, Any] | Invalid:
    if not raw:
        return Invalid(empty_reason)
    # Before decoding, so an oversized value costs nothing but its length.
    if len(raw) > max_bytes:
        return Invalid(f"{size_subject} {len(raw)} bytes; the limit is {max_bytes}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Invalid(f"not JSON: {exc}")
    if not isinstance(obj, dict):
        return Invalid(f"{what} must be a JSON object (got {describe(obj)})")
    return obj


def _unexpected(exc: Exception) -> Invalid:
    return Invalid(f"could not be validated: {type(exc).__name__}: {exc}")
