"""What makes a decoded JSON object valid UserPreferences (shared/CONTRACT.md)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.field_checks import (
    KNOWN_CHANNELS,
    check_identifier,
    check_nesting,
    check_optional_locale,
    describe,
    drop_reserved_unknowns,
    reserved_names,
)
from schemas.records import Addresses, DigestSettings, QuietHours, UserPreferences

# The patterns are shared verbatim with user_preferences.json (tests compare them).
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+$"
PHONE_PATTERN = r"^\+[1-9][0-9]{1,14}$"
WEBHOOK_URL_PATTERN = r"^https?://[^\s/?#]+([/?#]\S*)?$"
CLOCK_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
DIGEST_WINDOWS: tuple[str, ...] = ("hourly",)

_EMAIL = re.compile(EMAIL_PATTERN)
_PHONE = re.compile(PHONE_PATTERN)
_WEBHOOK_URL = re.compile(WEBHOOK_URL_PATTERN)
_CLOCK_TIME = re.compile(CLOCK_TIME_PATTERN)

# ZoneInfo resolves this one, but to whatever the worker's host is set to, so the same
# preferences would mean different hours on different workers.
_HOST_DEPENDENT_ZONES = frozenset({"localtime"})

_NESTED_RECORDS: tuple[tuple[str, Any], ...] = (
    ("addresses", Addresses),
    ("quiet_hours", QuietHours),
    ("digest", DigestSettings),
)
PREFERENCE_FIELDS = frozenset(UserPreferences._options.fields)
_RESERVED = reserved_names(UserPreferences)
_NESTED_FIELDS = {name: frozenset(record._options.fields) for name, record in _NESTED_RECORDS}
_NESTED_RESERVED = {name: reserved_names(record) for name, record in _NESTED_RECORDS}


def preference_problems(obj: dict[str, Any]) -> list[str]:
    """Every reason ``obj`` is not valid preferences; on success, nested records are built."""
    problems: list[str] = []
    check_identifier(obj, "user_id", problems)
    _check_timezone(obj.get("timezone"), problems)
    check_optional_locale(obj, "locale", problems)
    if (addresses := obj.get("addresses")) is not None:
        _check_addresses(addresses, problems)
    if (channels := obj.get("channels")) is not None:
        _check_channel_flags(channels, "channels", problems)
    if (categories := obj.get("categories")) is not None:
        _check_categories(categories, problems)
    if (quiet_hours := obj.get("quiet_hours")) is not None:
        _check_quiet_hours(quiet_hours, problems)
    if (digest := obj.get("digest")) is not None:
        _check_digest(digest, problems)
    if (caps := obj.get("caps")) is not None:
        _check_caps(caps, problems)
    # The same limit as events: unknown fields are dropped when stored, but a web PATCH or
    # a future field must not be able to carry what orjson cannot write back.
    check_nesting(obj, problems)
    if not problems:
        _build_nested_records(obj)
    return problems


def is_known_timezone(name: str) -> bool:
    if name in _HOST_DEPENDENT_ZONES:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: names of tzdata folders ("America") and overlong names.
        return False
    return True


def _check_timezone(timezone: Any, problems: list[str]) -> None:
    if timezone is None:
        return
    if not isinstance(timezone, str):
        problems.append(
            f"field 'timezone' must be an IANA time zone name (got {describe(timezone)})"
        )
    elif not is_known_timezone(timezone):
        problems.append(f"unknown timezone {describe(timezone)}")


def _check_object(value: Any, label: str, problems: list[str]) -> bool:
    if isinstance(value, dict):
        return True
    problems.append(f"field '{label}' must be an object (got {describe(value)})")
    return False


def _check_addresses(addresses: Any, problems: list[str]) -> None:
    if not _check_object(addresses, "addresses", problems):
        return
    email = addresses.get("email")
    if email is not None and not (isinstance(email, str) and _EMAIL.fullmatch(email)):
        problems.append(
            "field 'addresses.email' must be an email address like someone@example.com"
            f" (got {describe(email)})"
        )
    phone = addresses.get("phone")
    if phone is not None and not (isinstance(phone, str) and _PHONE.fullmatch(phone)):
        problems.append(
            "field 'addresses.phone' must be an E.164 number like +14155550123"
            f" (got {describe(phone)})"
        )
    tokens = addresses.get("push_tokens")
    if tokens is not None and not (
        isinstance(tokens, list) and all(isinstance(t, str) and t for t in tokens)
    ):
        problems.append(
            "field 'addresses.push_tokens' must be a list of non-empty strings"
            f" (got {describe(tokens)})"
        )
    url = addresses.get("webhook_url")
    if url is not None and not (isinstance(url, str) and _is_webhook_url(url)):
        problems.append(
            f"field 'addresses.webhook_url' must be an http or https URL (got {describe(url)})"
        )


def _is_webhook_url(url: str) -> bool:
    if _WEBHOOK_URL.fullmatch(url) is None:
        return False
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return False
    return bool(parts.hostname)


def _check_channel_flags(flags: Any, label: str, problems: list[str]) -> None:
    if not isinstance(flags, dict):
        problems.append(
            f"field '{label}' must be an object of channel: true/false (got {describe(flags)})"
        )
        return
    for channel, enabled in flags.items():
        if channel not in KNOWN_CHANNELS:
            problems.append(f"unknown channel {describe(channel)} in '{label}'")
        elif not isinstance(enabled, bool):
            problems.append(
                f"field '{label}.{channel}' must be true or false (got {describe(enabled)})"
            )


def _check_categories(categories: Any, problems: list[str]) -> None:
    if not _check_object(categories, "categories", problems):
        return
    for category, flags in categories.items():
        if not category:
            problems.append("category names in 'categories' must not be empty")
        else:
            _check_channel_flags(flags, f"categories.{category}", problems)


def _check_quiet_hours(quiet_hours: Any, problems: list[str]) -> None:
    if not _check_object(quiet_hours, "quiet_hours", problems):
        return
    times: list[str] = []
    for edge in ("start", "end"):
        value = quiet_hours.get(edge)
        if isinstance(value, str) and _CLOCK_TIME.fullmatch(value):
            times.append(value)
        elif edge not in quiet_hours:
            problems.append(f"missing required field 'quiet_hours.{edge}'")
        else:
            problems.append(
                f"field 'quiet_hours.{edge}' must be a 24-hour time \"HH:MM\" from 00:00 to 23:59"
                f" (got {describe(value)})"
            )
    if len(times) == 2 and times[0] == times[1]:
        problems.append(
            f"quiet hours must start and end at different times (both are '{times[0]}')"
        )


def _check_digest(digest: Any, problems: list[str]) -> None:
    if not _check_object(digest, "digest", problems):
        return
    enabled = digest.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        problems.append(f"field 'digest.enabled' must be true or false (got {describe(enabled)})")
    window = digest.get("window")
    if window is not None and window not in DIGEST_WINDOWS:
        problems.append(
            f"field 'digest.window' must be one of {', '.join(DIGEST_WINDOWS)}"
            f" (got {describe(window)})"
        )


def _check_caps(caps: Any, problems: list[str]) -> None:
    if not isinstance(caps, dict):
        problems.append(
            "field 'caps' must be an object of channel: notifications per hour"
            f" (got {describe(caps)})"
        )
        return
    for channel, cap in caps.items():
        if channel not in KNOWN_CHANNELS:
            problems.append(f"unknown channel {describe(channel)} in 'caps'")
        elif isinstance(cap, float) and cap.is_integer() and cap >= 0:
            # JSON Schema counts 5.0 as an integer, so producers validating with it may send one.
            caps[channel] = int(cap)
        elif isinstance(cap, bool) or not isinstance(cap, int) or cap < 0:
            problems.append(
                f"field 'caps.{channel}' must be a whole number of at least 0 (got {describe(cap)})"
            )


def _build_nested_records(obj: dict[str, Any]) -> None:
    """Turn nested objects into records here, with the same key hygiene as the top level."""
    drop_reserved_unknowns(obj, PREFERENCE_FIELDS, _RESERVED)
    for name, record in _NESTED_RECORDS:
        value = obj.get(name)
        if value is not None:
            drop_reserved_unknowns(value, _NESTED_FIELDS[name], _NESTED_RESERVED[name])
            obj[name] = record.from_data(value)
