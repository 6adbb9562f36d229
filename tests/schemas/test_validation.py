"""parse_event / parse_preferences: records for good bytes, a readable reason for anything else."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from schemas.records import (
    Addresses,
    DigestSettings,
    NotificationEvent,
    QuietHours,
    UserPreferences,
)
from schemas.validation import Invalid, parse_event, parse_preferences, parse_timestamp
from tests.schemas.fixtures import ABSENT, event, preferences

MAX_BYTES = 65536


def parsed_event(value: Any) -> NotificationEvent | Invalid:
    return parse_event(orjson.dumps(value), max_bytes=MAX_BYTES)


def parsed_preferences(value: Any) -> UserPreferences | Invalid:
    return parse_preferences(orjson.dumps(value), max_bytes=MAX_BYTES)


def reason_of(result: object) -> str:
    assert isinstance(result, Invalid), f"expected Invalid, got {result!r}"
    return result.reason


# --- events: accepted ---------------------------------------------------------------


def test_template_event_becomes_a_record_with_its_values() -> None:
    result = parsed_event(
        event(
            channels=["email", "push"],
            send_at="2024-05-01T09:30:00Z",
            expires_at="2024-05-02T09:30:00.250+02:00",
            created_at="2024-05-01T09:29:59-05:00",
            dedupe_key="invoice-1",
            locale="en-GB",
            tenant_id="acme",
        )
    )
    assert isinstance(result, NotificationEvent)
    assert result.event_id == "evt-1"
    assert result.user_id == "user-1"
    assert result.category == "billing"
    assert result.priority == "high"
    assert result.template == "invoice_ready"
    assert result.data == {"amount": "12.00"}
    assert result.channels == ["email", "push"]
    assert result.send_at == "2024-05-01T09:30:00Z"
    assert result.dedupe_key == "invoice-1"
    assert result.locale == "en-GB"
    assert result.tenant_id == "acme"
    assert result.title is None


def test_template_without_data_gets_an_empty_mapping() -> None:
    result = parsed_event(event(data=ABSENT))
    assert isinstance(result, NotificationEvent)
    assert result.data == {}
    result = parsed_event(event(data=None))
    assert isinstance(result, NotificationEvent)
    assert result.data == {}


def test_title_and_body_event_is_accepted() -> None:
    result = parsed_event(
        event(template=ABSENT, data=ABSENT, title="Invoice ready", body="Your invoice.")
    )
    assert isinstance(result, NotificationEvent)
    assert (result.title, result.body, result.template) == ("Invoice ready", "Your invoice.", None)


@pytest.mark.parametrize("priority", ["critical", "high", "normal", "low"])
def test_every_priority_is_accepted(priority: str) -> None:
    assert isinstance(parsed_event(event(priority=priority)), NotificationEvent)


def test_null_optional_fields_mean_absent() -> None:
    result = parsed_event(
        event(channels=None, send_at=None, dedupe_key=None, title=None, body=None)
    )
    assert isinstance(result, NotificationEvent)
    assert result.channels is None


def test_unknown_fields_are_kept_and_left_out_of_the_record_fields() -> None:
    result = parsed_event(event(trace_id="abc", nested={"a": [1, 2]}))
    assert isinstance(result, NotificationEvent)
    assert result.trace_id == "abc"
    assert result.nested == {"a": [1, 2]}
    assert "trace_id" not in result.asdict()


def test_unknown_fields_cannot_hijack_the_record() -> None:
    hostile = event(
        __faust={"ns": "schemas.records.UserPreferences"},
        asdict="shadowed",
        self="constructor argument",
        _private=1,
    )
    result = parsed_event(hostile)
    assert type(result) is NotificationEvent
    assert result.asdict()["event_id"] == "evt-1"
    assert not hasattr(result, "_private")


def test_event_of_exactly_the_limit_is_accepted() -> None:
    raw = orjson.dumps(event())
    assert isinstance(parse_event(raw, max_bytes=len(raw)), NotificationEvent)


# --- events: rejected ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (event(user_id=ABSENT), "missing required field 'user_id'"),
        (event(event_id=ABSENT), "missing required field 'event_id'"),
        (event(category=ABSENT), "missing required field 'category'"),
        (event(priority=ABSENT), "missing required field 'priority'"),
        (event(event_id=""), "field 'event_id' must be a non-empty string (got '')"),
        (event(user_id=42), "field 'user_id' must be a non-empty string (got 42)"),
        (event(category=None), "field 'category' must be a non-empty string (got null)"),
        (event(event_id="e" * 257), "field 'event_id' must be at most 256 characters (got 257)"),
        (event(user_id="u" * 300), "field 'user_id' must be at most 256 characters (got 300)"),
        (
            event(priority="urgent"),
            "field 'priority' must be one of critical, high, normal, low (got 'urgent')",
        ),
        (event(priority=1), "field 'priority' must be one of critical, high, normal, low (got 1)"),
        (
            event(template=ABSENT, data=ABSENT),
            "needs either 'template' (with 'data') or 'title' and 'body'",
        ),
        (
            event(template=ABSENT, data=ABSENT, title="only a title"),
            "needs either 'template' (with 'data') or 'title' and 'body'",
        ),
        (event(template=None, title=None, body="b"), "needs either 'template'"),
        (event(template=""), "field 'template' must be a non-empty string"),
        (event(template=["t"]), "field 'template' must be a non-empty string (got an array)"),
        (event(data=[1]), "field 'data' must be an object (got an array)"),
        (event(title=5, body="b"), "field 'title' must be a string (got 5)"),
        (event(body=True), "field 'body' must be a string (got true)"),
        (event(channels="email"), "field 'channels' must be a list of strings"),
        (event(channels=["email", 3]), "field 'channels' must be a list of strings"),
        (event(channels=[]), "field 'channels' must not be empty"),
        (event(channels=["email", "fax"]), "unknown channel 'fax' in 'channels'"),
        (event(channels=["sms", "sms"]), "channel 'sms' is listed more than once in 'channels'"),
        (
            event(send_at="2024-05-01T09:30:00"),
            "field 'send_at' must be an ISO-8601 timestamp with a UTC offset",
        ),
        (event(expires_at="tomorrow"), "field 'expires_at' must be an ISO-8601 timestamp"),
        (event(created_at=1714555800), "field 'created_at' must be an ISO-8601 timestamp"),
        (event(send_at="2024-02-30T09:30:00Z"), "field 'send_at' must be an ISO-8601 timestamp"),
        (event(dedupe_key=7), "field 'dedupe_key' must be a string (got 7)"),
        (
            event(locale={"lang": "en"}),
            "field 'locale' must be a language tag such as 'en' or 'pt-BR' (got an object)",
        ),
        (event(locale="../../etc"), "field 'locale' must be a language tag"),
        (event(tenant_id=False), "field 'tenant_id' must be a string (got false)"),
    ],
)
def test_bad_event_is_invalid_with_a_reason_naming_the_problem(value: Any, expected: str) -> None:
    assert expected in reason_of(parsed_event(value))


def test_long_bad_values_are_shortened_in_the_reason() -> None:
    reason = reason_of(parsed_event(event(priority="x" * 10_000)))
    assert len(reason) < 200


def test_every_problem_is_reported_joined_by_semicolons() -> None:
    value = event(user_id=ABSENT, priority="urgent", channels=["fax"], send_at="noon")
    problems = reason_of(parsed_event(value)).split("; ")
    assert problems[0] == "missing required field 'user_id'"
    assert any("'urgent'" in p for p in problems)
    assert "unknown channel 'fax' in 'channels'" in problems
    assert any(p.startswith("field 'send_at'") for p in problems)


def test_oversized_event_stops_at_the_size() -> None:
    raw = b"{" + b" " * 69_998 + b"}"
    assert reason_of(parse_event(raw, max_bytes=MAX_BYTES)) == (
        "event is 70000 bytes; the limit is 65536"
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"not json", "not JSON: "),
        (b'{"event_id": "e",', "not JSON: "),
        (b"\xff\xfe{}", "not JSON: "),
        (b'{"event_id": "\xc3\x28"}', "not JSON: "),
        (b"[" * 5000 + b"]" * 5000, "not JSON: "),
        (b'{"event_id": 1e400}', "not JSON: "),
        (b"NaN", "not JSON: "),
        (b"[]", "event must be a JSON object (got an array)"),
        (b'"text"', "event must be a JSON object (got 'text')"),
        (b"null", "event must be a JSON object (got null)"),
        (b"12", "event must be a JSON object (got 12)"),
    ],
)
def test_undecodable_or_non_object_event_gives_one_reason(raw: bytes, expected: str) -> None:
    reason = reason_of(parse_event(raw, max_bytes=MAX_BYTES))
    assert reason.startswith(expected)
    assert "; missing" not in reason


@pytest.mark.parametrize("raw", [None, b""])
def test_empty_event_value_is_invalid(raw: bytes | None) -> None:
    assert reason_of(parse_event(raw, max_bytes=MAX_BYTES)) == (
        "value is empty (tombstones are only allowed on the preferences topic)"
    )


# --- never raising --------------------------------------------------------------------


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 3 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([True, False])
    if kind == 2:
        return rng.choice([0, -1, 2**63 - 1, 2**64 + 1, 1.5, -0.0, 1e308])
    if kind in (3, 4):
        return rng.choice(["", "email", "critical", "x" * 300, "2024-05-01T09:30:00Z", "\u2028"])
    if kind == 5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    return _random_object(rng, depth + 1)


_GARBAGE_KEYS = [*event(), *preferences(), "channels", "send_at", "title", "__faust", "self"]


def _random_object(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    return {rng.choice(_GARBAGE_KEYS): _random_json(rng, depth) for _ in range(rng.randrange(6))}


def _garbage(rng: random.Random) -> list[bytes]:
    valid = orjson.dumps(event(channels=["email"], send_at="2024-05-01T09:30:00Z"))
    flipped = bytearray(valid)
    for _ in range(rng.randrange(1, 6)):
        flipped[rng.randrange(len(flipped))] = rng.randrange(256)
    return [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
        valid[: rng.randrange(len(valid))],
        bytes(flipped),
        # The standard library, unlike orjson, writes integers beyond 64 bits.
        json.dumps(_random_json(rng)).encode(),
        json.dumps(event() | _random_object(rng)).encode(),
        json.dumps(preferences() | _random_object(rng)).encode(),
    ]


def test_garbage_never_raises() -> None:
    rng = random.Random(20240501)
    for _ in range(1500):
        for raw in _garbage(rng):
            assert isinstance(parse_event(raw, max_bytes=MAX_BYTES), NotificationEvent | Invalid)
            assert isinstance(
                parse_preferences(raw, max_bytes=MAX_BYTES), UserPreferences | Invalid
            )


def test_unexpected_input_types_become_invalid_instead_of_raising() -> None:
    assert isinstance(parse_event(12345, max_bytes=MAX_BYTES), Invalid)  # type: ignore[arg-type]
    assert isinstance(parse_preferences(object(), max_bytes=MAX_BYTES), Invalid)  # type: ignore[arg-type]


# --- preferences ----------------------------------------------------------------------


def test_preferences_become_a_record_with_nested_records() -> None:
    result = parsed_preferences(preferences())
    assert isinstance(result, UserPreferences)
    assert result.user_id == "user-1"
    assert result.timezone == "Europe/Paris"
    assert result.locale == "fr-FR"
    assert isinstance(result.addresses, Addresses)
    assert result.addresses.email == "user-1@example.com"
    assert result.addresses.phone == "+33612345678"
    assert result.addresses.push_tokens == ["tok-1", "tok-2"]
    assert result.addresses.webhook_url == "https://hooks.example.com/clarion?x=1"
    assert result.channels == {
        "email": True,
        "sms": False,
        "push": True,
        "in_app": True,
        "webhook": False,
    }
    assert result.categories == {"marketing": {"email": False, "sms": False}}
    assert isinstance(result.quiet_hours, QuietHours)
    assert (result.quiet_hours.start, result.quiet_hours.end) == ("22:00", "07:00")
    assert isinstance(result.digest, DigestSettings)
    assert (result.digest.enabled, result.digest.window) == (True, "hourly")
    assert result.caps == {"sms": 3, "email": 0}


def test_minimal_preferences_get_defaults() -> None:
    result = parsed_preferences({"user_id": "user-1"})
    assert isinstance(result, UserPreferences)
    assert result.timezone == "UTC"
    assert result.addresses is None
    assert result.quiet_hours is None
    result = parsed_preferences({"user_id": "user-1", "timezone": None, "digest": {}})
    assert isinstance(result, UserPreferences)
    assert result.timezone == "UTC"
    assert isinstance(result.digest, DigestSettings)
    assert (result.digest.enabled, result.digest.window) == (True, "hourly")


def test_whole_number_caps_written_as_floats_are_taken_as_integers() -> None:
    result = parsed_preferences(preferences(caps={"sms": 3.0}))
    assert isinstance(result, UserPreferences)
    assert result.caps == {"sms": 3}
    assert type(result.caps["sms"]) is int


def test_unknown_preference_fields_are_kept_but_cannot_hijack_records() -> None:
    value = preferences(theme="dark", __faust={"ns": "schemas.records.NotificationEvent"})
    value["addresses"]["__faust"] = {"ns": "schemas.records.Delivery"}
    value["addresses"]["fax"] = "+3312345678"
    value["quiet_hours"]["to_representation"] = "shadowed"
    result = parsed_preferences(value)
    assert type(result) is UserPreferences
    assert result.theme == "dark"
    assert type(result.addresses) is Addresses
    assert result.addresses.fax == "+3312345678"
    assert type(result.quiet_hours) is QuietHours
    assert result.quiet_hours.to_representation()["start"] == "22:00"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (preferences(user_id=ABSENT), "missing required field 'user_id'"),
        (preferences(user_id=""), "field 'user_id' must be a non-empty string"),
        (preferences(user_id="u" * 257), "field 'user_id' must be at most 256 characters"),
        (preferences(timezone="Mars/Base"), "unknown timezone 'Mars/Base'"),
        (preferences(timezone="America"), "unknown timezone 'America'"),
        (preferences(timezone="../../etc/passwd"), "unknown timezone"),
        (preferences(timezone="localtime"), "unknown timezone 'localtime'"),
        (preferences(timezone=""), "unknown timezone ''"),
        (preferences(timezone=2), "field 'timezone' must be an IANA time zone name (got 2)"),
        (preferences(locale=1), "field 'locale' must be a language tag"),
        (preferences(locale="en_US.UTF-8"), "field 'locale' must be a language tag"),
        (preferences(addresses="a@b.c"), "field 'addresses' must be an object"),
        (preferences(addresses={"email": "a b@c.d"}), "field 'addresses.email' must be an email"),
        (preferences(addresses={"email": "a@b@c"}), "field 'addresses.email' must be an email"),
        (preferences(addresses={"email": "nobody"}), "field 'addresses.email' must be an email"),
        (
            preferences(addresses={"phone": "0612345678"}),
            "field 'addresses.phone' must be an E.164",
        ),
        (preferences(addresses={"phone": "+0612345678"}), "field 'addresses.phone'"),
        (preferences(addresses={"phone": "+1" + "2" * 15}), "field 'addresses.phone'"),
        (preferences(addresses={"push_tokens": "tok"}), "field 'addresses.push_tokens'"),
        (preferences(addresses={"push_tokens": ["ok", ""]}), "field 'addresses.push_tokens'"),
        (
            preferences(addresses={"webhook_url": "ftp://example.com/x"}),
            "field 'addresses.webhook_url' must be an http or https URL",
        ),
        (preferences(addresses={"webhook_url": "https://"}), "field 'addresses.webhook_url'"),
        (preferences(addresses={"webhook_url": "https://h:99999/"}), "'addresses.webhook_url'"),
        (preferences(addresses={"webhook_url": "https://a b/"}), "field 'addresses.webhook_url'"),
        (preferences(channels=["email"]), "field 'channels' must be an object"),
        (preferences(channels={"fax": True}), "unknown channel 'fax' in 'channels'"),
        (preferences(channels={"email": "yes"}), "field 'channels.email' must be true or false"),
        (preferences(categories=[]), "field 'categories' must be an object"),
        (preferences(categories={"social": True}), "field 'categories.social' must be an object"),
        (
            preferences(categories={"social": {"fax": False}}),
            "unknown channel 'fax' in 'categories.social'",
        ),
        (
            preferences(categories={"social": {"sms": 0}}),
            "field 'categories.social.sms' must be true",
        ),
        (preferences(categories={"": {"sms": False}}), "category names in 'categories'"),
        (preferences(quiet_hours="22-07"), "field 'quiet_hours' must be an object"),
        (preferences(quiet_hours={"start": "22:00"}), "missing required field 'quiet_hours.end'"),
        (
            preferences(quiet_hours={"start": "24:00", "end": "07:00"}),
            "field 'quiet_hours.start' must be a 24-hour time \"HH:MM\"",
        ),
        (preferences(quiet_hours={"start": "7:00", "end": "22:00"}), "'quiet_hours.start'"),
        (preferences(quiet_hours={"start": "22:00", "end": "07:60"}), "'quiet_hours.end'"),
        (preferences(quiet_hours={"start": None, "end": "07:00"}), "'quiet_hours.start'"),
        (
            preferences(quiet_hours={"start": "22:00", "end": "22:00"}),
            "quiet hours must start and end at different times (both are '22:00')",
        ),
        (preferences(digest=True), "field 'digest' must be an object"),
        (preferences(digest={"enabled": "yes"}), "field 'digest.enabled' must be true or false"),
        (
            preferences(digest={"window": "daily"}),
            "field 'digest.window' must be one of hourly (got 'daily')",
        ),
        (preferences(caps=[1]), "field 'caps' must be an object"),
        (preferences(caps={"fax": 1}), "unknown channel 'fax' in 'caps'"),
        (preferences(caps={"sms": -1}), "field 'caps.sms' must be a whole number of at least 0"),
        (preferences(caps={"sms": 1.5}), "field 'caps.sms' must be a whole number"),
        (preferences(caps={"sms": True}), "field 'caps.sms' must be a whole number"),
        (preferences(caps={"sms": "3"}), "field 'caps.sms' must be a whole number"),
    ],
)
def test_bad_preferences_are_invalid_with_a_reason_naming_the_problem(
    value: Any, expected: str
) -> None:
    assert expected in reason_of(parsed_preferences(value))


def test_every_preferences_problem_is_reported() -> None:
    value = preferences(timezone="Mars/Base", channels={"fax": True}, caps={"sms": -1})
    problems = reason_of(parsed_preferences(value)).split("; ")
    assert problems == [
        "unknown timezone 'Mars/Base'",
        "unknown channel 'fax' in 'channels'",
        "field 'caps.sms' must be a whole number of at least 0 (got -1)",
    ]


def test_preferences_size_and_shape_stop_at_the_first_problem() -> None:
    raw = orjson.dumps(preferences(locale="x" * 100))
    assert reason_of(parse_preferences(raw, max_bytes=100)) == (
        f"preferences are {len(raw)} bytes; the limit is 100"
    )
    assert reason_of(parse_preferences(b"[1]", max_bytes=MAX_BYTES)) == (
        "preferences must be a JSON object (got an array)"
    )
    assert reason_of(parse_preferences(b"{", max_bytes=MAX_BYTES)).startswith("not JSON: ")
    assert reason_of(parse_preferences(b"", max_bytes=MAX_BYTES)).startswith("value is empty")


# --- timestamps -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T09:30:00Z", datetime(2024, 5, 1, 9, 30, tzinfo=UTC)),
        (
            "2024-05-01T09:30:00.5+02:00",
            datetime(2024, 5, 1, 9, 30, 0, 500_000, tzinfo=timezone(timedelta(hours=2))),
        ),
        (
            "2024-05-01T09:30:00.123456789-05:30",
            datetime(
                2024, 5, 1, 9, 30, 0, 123_456, tzinfo=timezone(-timedelta(hours=5, minutes=30))
            ),
        ),
    ],
)
def test_parse_timestamp_returns_aware_datetimes(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T09:30:00",
        "2024-05-01",
        "2024-05-01T09:30Z",
        "20240501T093000Z",
        "2024-05-01T09:30:00+0200",
        "2024-05-01T09:30:00+02:00:30",
        "2024-05-01 09:30:00Z",
        "2024-05-01t09:30:00z",
        "2024-02-30T09:30:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T09:30:00Z\n",
        "٢٠٢٤-05-01T09:30:00Z",
        "",
    ],
)
def test_parse_timestamp_rejects_naive_and_non_rfc3339_text(text: str) -> None:
    assert parse_timestamp(text) is None


@pytest.mark.parametrize(
    "value",
    [
        event(),
        event(template="welcome", data={"name": "Ada", "items": [1, {"a": None}]}, title=None),
        event(channels=["email", "push"], send_at="2026-01-01T00:00:00Z", locale="fr-FR"),
        event(trace_id="abc", nested={"a": [1, 2]}, dedupe_key="k", tenant_id="t"),
    ],
)
def test_a_checked_event_is_the_record_from_data_would_build(value: dict[str, Any]) -> None:
    fast = parsed_event(value)
    reference = NotificationEvent.from_data(orjson.loads(orjson.dumps(value)))
    assert type(fast) is NotificationEvent
    assert fast.asdict() == reference.asdict()
    assert vars(fast) == vars(reference)


def test_brackets_in_strings_do_not_let_deep_data_through() -> None:
    # Text with more brackets than the nesting limit is walked, and deep data still refused.
    deep: Any = 1
    for _ in range(70):
        deep = [deep]
    refused = parse_event(orjson.dumps(event(data={"d": deep})), max_bytes=1 << 20)
    assert isinstance(refused, Invalid)
    assert "nests" in refused.reason
    brackets = parsed_event(event(body="[" * 200, title="{" * 100))
    assert isinstance(brackets, NotificationEvent)
