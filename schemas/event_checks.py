"""What makes a decoded JSON object a valid NotificationEvent (shared/CONTRACT.md)."""

from __future__ import annotations

from typing import Any

from schemas.field_checks import (
    KNOWN_CHANNELS,
    check_identifier,
    check_nesting,
    check_optional_locale,
    check_optional_string,
    check_optional_timestamp,
    describe,
    drop_reserved_unknowns,
    required_string,
    reserved_names,
)
from schemas.hold_horizon import HoldHorizon, check_hold_horizon
from schemas.records import PRIORITIES, NotificationEvent
from schemas.template_names import template_name_problem

EVENT_FIELDS = frozenset(NotificationEvent._options.fields)
_RESERVED = reserved_names(NotificationEvent)
_KNOWN_PRIORITIES = frozenset(PRIORITIES)
_PRIORITY_CHOICES = ", ".join(PRIORITIES)
_CONTENT_RULE = "needs either 'template' (with 'data') or 'title' and 'body'"


def event_problems(
    obj: dict[str, Any], horizon: HoldHorizon | None = None, *, shallow: bool = False
) -> list[str]:
    """Every reason ``obj`` is not a valid event, in field order.

    With a ``horizon``, ``send_at`` and ``expires_at`` must not lie beyond it. ``shallow``: the
    caller knows no field can nest too deep (its JSON text has too few brackets).

    A valid ``obj`` is readied for ``from_data`` in place: defaults filled in, and unknown
    keys that would collide with the record's own attributes dropped.
    """
    problems: list[str] = []
    check_identifier(obj, "event_id", problems)
    check_identifier(obj, "user_id", problems)
    required_string(obj, "category", problems)
    _check_priority(obj, problems)
    _check_content(obj, problems)
    _check_channels(obj.get("channels"), problems)
    check_optional_timestamp(obj, "send_at", problems)
    check_optional_timestamp(obj, "expires_at", problems)
    check_optional_timestamp(obj, "created_at", problems)
    if horizon is not None and not problems:
        check_hold_horizon(obj, horizon, problems)
    check_optional_string(obj, "dedupe_key", problems)
    check_optional_locale(obj, "locale", problems)
    check_optional_string(obj, "tenant_id", problems)
    if not shallow:
        check_nesting(obj, problems)
    if not problems:
        drop_reserved_unknowns(obj, EVENT_FIELDS, _RESERVED)
    return problems


def _check_priority(obj: dict[str, Any], problems: list[str]) -> None:
    priority = obj.get("priority")
    if isinstance(priority, str) and priority in _KNOWN_PRIORITIES:
        return
    if "priority" not in obj:
        problems.append("missing required field 'priority'")
    else:
        problems.append(
            f"field 'priority' must be one of {_PRIORITY_CHOICES} (got {describe(priority)})"
        )


def _check_content(obj: dict[str, Any], problems: list[str]) -> None:
    template = obj.get("template")
    title = obj.get("title")
    body = obj.get("body")
    data = obj.get("data")
    if template is not None and not (isinstance(template, str) and template):
        problems.append(f"field 'template' must be a non-empty string (got {describe(template)})")
    elif isinstance(template, str) and (problem := template_name_problem(template)):
        problems.append(problem)
    if data is not None and not isinstance(data, dict):
        problems.append(f"field 'data' must be an object (got {describe(data)})")
    if title is not None and not isinstance(title, str):
        problems.append(f"field 'title' must be a string (got {describe(title)})")
    if body is not None and not isinstance(body, str):
        problems.append(f"field 'body' must be a string (got {describe(body)})")
    if template is None:
        if title is None or body is None:
            problems.append(_CONTENT_RULE)
    elif data is None:
        # Templates render against data; an empty mapping spares every renderer a None check.
        obj["data"] = {}


def _check_channels(channels: Any, problems: list[str]) -> None:
    if channels is None:
        return
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        problems.append(f"field 'channels' must be a list of strings (got {describe(channels)})")
        return
    if not channels:
        problems.append(
            "field 'channels' must not be empty (leave it out to use the user's enabled channels)"
        )
        return
    seen: set[str] = set()
    for channel in channels:
        if channel in seen:
            if channel in KNOWN_CHANNELS:
                problems.append(f"channel '{channel}' is listed more than once in 'channels'")
        elif channel not in KNOWN_CHANNELS:
            problems.append(f"unknown channel {describe(channel)} in 'channels'")
        seen.add(channel)
