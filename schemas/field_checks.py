"""Checks shared by the event and preferences validators; each appends reasons to a list."""

from __future__ import annotations

import re
from typing import Any

import faust
import orjson

from schemas.records import CHANNELS
from schemas.timestamps import parse_timestamp

MAX_ID_LENGTH = 256
KNOWN_CHANNELS = frozenset(CHANNELS)
_SHOWN_CHARS = 60


def describe(value: Any) -> str:
    """A short, JSON-flavoured rendering of a decoded JSON value, safe to put in a reason."""
    if isinstance(value, str):
        return repr(value) if len(value) <= _SHOWN_CHARS else repr(value[:_SHOWN_CHARS]) + "..."
    if isinstance(value, list | dict):
        return "an array" if isinstance(value, list) else "an object"
    # null, true, false and numbers: the way the producer wrote them.
    return orjson.dumps(value).decode()


def check_identifier(obj: dict[str, Any], name: str, problems: list[str]) -> None:
    value = required_string(obj, name, problems)
    if value is not None and len(value) > MAX_ID_LENGTH:
        problems.append(
            f"field '{name}' must be at most {MAX_ID_LENGTH} characters (got {len(value)})"
        )


def required_string(obj: dict[str, Any], name: str, problems: list[str]) -> str | None:
    """``obj[name]`` when it is a non-empty string, else None with the reason recorded."""
    value = obj.get(name)
    if isinstance(value, str) and value:
        return value
    if name not in obj:
        problems.append(f"missing required field '{name}'")
    else:
        problems.append(f"field '{name}' must be a non-empty string (got {describe(value)})")
    return None


def check_optional_string(obj: dict[str, Any], name: str, problems: list[str]) -> None:
    value = obj.get(name)
    if value is not None and not isinstance(value, str):
        problems.append(f"field '{name}' must be a string (got {describe(value)})")


# BCP 47-ish: a language, then optional region/script/variant subtags ("pt-BR", "zh-Hant-TW").
LOCALE_PATTERN = re.compile(r"[A-Za-z]{1,8}(?:[-_][A-Za-z0-9]{1,8})*")
# Bounded because the locale becomes part of a template file name; real tags are far shorter.
MAX_LOCALE_LENGTH = 64


def check_optional_locale(obj: dict[str, Any], name: str, problems: list[str]) -> None:
    value = obj.get(name)
    if value is None:
        return
    if not isinstance(value, str) or not LOCALE_PATTERN.fullmatch(value):
        problems.append(
            f"field '{name}' must be a language tag such as 'en' or 'pt-BR' (got {describe(value)})"
        )
    elif len(value) > MAX_LOCALE_LENGTH:
        problems.append(
            f"field '{name}' must be at most {MAX_LOCALE_LENGTH} characters (got {len(value)})"
        )


def check_optional_timestamp(obj: dict[str, Any], name: str, problems: list[str]) -> None:
    value = obj.get(name)
    if value is None:
        return
    if not isinstance(value, str) or parse_timestamp(value) is None:
        problems.append(
            f"field '{name}' must be an ISO-8601 timestamp with a UTC offset "
            f"such as 2024-05-01T09:30:00Z (got {describe(value)})"
        )


def reserved_names(record: type[faust.Record]) -> frozenset[str]:
    """Keys that must not reach ``from_data`` as unknown fields.

    Faust stores unknown keys as instance attributes and passes them as keyword arguments,
    so a producer could otherwise shadow methods ("asdict"), break the constructor ("self")
    or pick a different model class through faust's blessed key ("__faust").
    """
    return frozenset({"self", *dir(record)})


def drop_reserved_unknowns(
    obj: dict[str, Any], fields: frozenset[str], reserved: frozenset[str]
) -> None:
    for name in obj.keys() - fields:
        if name.startswith("_") or name in reserved:
            del obj[name]


# orjson reads 1024 levels but writes only 254, and Clarion's outputs wrap an event's data
# in a few levels of their own (a held row holds the event, which holds data). A limit well
# below that keeps every record that carries the data writable.
MAX_NESTING = 64


def nesting_depth(value: Any) -> int:
    """Levels of arrays and objects in ``value``: 0 for a scalar, 1 for ``{}`` or ``[1]``.

    Iterative, because decoded JSON may nest deeper than Python's recursion limit.
    """
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def check_nesting(obj: dict[str, Any], problems: list[str]) -> None:
    """Every field, unknown ones too: they are published again as sent (POST /events)."""
    for name, value in obj.items():
        depth = nesting_depth(value)
        if depth > MAX_NESTING:
            problems.append(
                f"field '{name}' nests {depth} levels deep; at most {MAX_NESTING} are allowed"
            )
