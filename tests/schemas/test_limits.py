"""The limits of issue 10: nesting depth, template names, the hold horizon, locale length."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from schemas.field_checks import MAX_NESTING, nesting_depth
from schemas.hold_horizon import HoldHorizon
from schemas.template_names import template_name_problem
from schemas.validation import Invalid, encode_decoded, parse_event, parse_preferences
from tests.schemas.fixtures import event

MAX_BYTES = 1 << 20
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def nested(levels: int, *, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(levels):
        value = {"k": value} if level % 2 else [value]
    return value


def raw_with_data(levels: int) -> bytes:
    """An event with ``data`` nested ``levels`` deep, past what orjson can write."""
    head = orjson.dumps(event(data={}))[: -len(b'"data":{}}')]
    return head + b'"data":' + b'{"k":' * (levels - 1) + b"{}" + b"}" * levels


@pytest.mark.parametrize(
    ("value", "depth"),
    [(1, 0), ("x", 0), ({}, 1), ([], 1), ({"a": [1, {"b": 2}]}, 3), (nested(900), 900)],
)
def test_nesting_depth_counts_levels_of_arrays_and_objects(value: Any, depth: int) -> None:
    assert nesting_depth(value) == depth


def test_data_at_the_limit_is_accepted_and_one_level_more_is_not() -> None:
    assert not isinstance(parse_event(raw_with_data(MAX_NESTING), max_bytes=MAX_BYTES), Invalid)
    parsed = parse_event(raw_with_data(MAX_NESTING + 1), max_bytes=MAX_BYTES)
    assert parsed == Invalid("field 'data' nests 65 levels deep; at most 64 are allowed")


def test_deep_data_beyond_what_orjson_writes_is_a_reason_not_an_error() -> None:
    parsed = parse_event(raw_with_data(300), max_bytes=MAX_BYTES)
    assert parsed == Invalid("field 'data' nests 300 levels deep; at most 64 are allowed")


def test_unknown_fields_and_preferences_have_the_same_limit() -> None:
    too_deep = orjson.dumps(nested(MAX_NESTING))  # orjson writes 64; one more level below
    raw = orjson.dumps(event())[:-1] + b',"trace":[' + too_deep + b"]}"
    assert parse_event(raw, max_bytes=MAX_BYTES) == Invalid(
        "field 'trace' nests 65 levels deep; at most 64 are allowed"
    )
    raw = b'{"user_id":"u","theme":[' + too_deep + b"]}"
    assert parse_preferences(raw, max_bytes=MAX_BYTES) == Invalid(
        "field 'theme' nests 65 levels deep; at most 64 are allowed"
    )


def test_decoded_values_are_checked_before_they_are_encoded_again() -> None:
    deep = orjson.loads(raw_with_data(300))
    assert encode_decoded(deep) == Invalid(
        "field 'data' nests 300 levels deep; at most 64 are allowed"
    )
    assert encode_decoded(orjson.loads(b"[" * 300 + b"]" * 300)) == Invalid(
        "event must be a JSON object (got an array)"
    )
    assert encode_decoded(event()) == orjson.dumps(event())


@pytest.mark.parametrize(
    "name", ["welcome", "security_alert", "Invoice-2.v1", "0", "a" * 128, "a.b_c-d"]
)
def test_good_template_names(name: str) -> None:
    assert template_name_problem(name) is None
    assert not isinstance(
        parse_event(orjson.dumps(event(template=name)), max_bytes=MAX_BYTES), Invalid
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("t" * 300, "field 'template' must be at most 128 characters (got 300)"),
        ("a" * 129, "at most 128 characters (got 129)"),
        ("../secrets", "may only contain letters, digits"),
        ("..", "must start with a letter or digit"),
        ("a..b", "must not contain '..'"),
        (".hidden", "must start with a letter or digit"),
        ("_x", "must start with a letter or digit"),
        ("a/b", "(got 'a/b')"),
        ("a\\b", "may only contain"),
        ("wel come", "may only contain"),
        ("é", "may only contain"),
        ("a\x00b", "(got 'a\\x00b')"),
    ],
)
def test_bad_template_names_are_invalid_with_the_rule(name: str, expected: str) -> None:
    parsed = parse_event(orjson.dumps(event(template=name)), max_bytes=MAX_BYTES)
    assert isinstance(parsed, Invalid)
    assert parsed.reason.startswith("field 'template' ")
    assert expected in parsed.reason


def test_a_locale_is_bounded_because_it_names_template_files() -> None:
    long_locale = "en" + "-abcdefgh" * 30
    parsed = parse_event(orjson.dumps(event(locale=long_locale)), max_bytes=MAX_BYTES)
    assert parsed == Invalid("field 'locale' must be at most 64 characters (got 272)")


def test_send_at_and_expires_at_within_the_horizon_are_accepted() -> None:
    horizon = HoldHorizon(now=NOW)
    value = event(send_at="2027-11-24T12:00:00Z", expires_at="2027-11-24T13:00:00+01:00")
    assert not isinstance(
        parse_event(orjson.dumps(value), max_bytes=MAX_BYTES, horizon=horizon), Invalid
    )


def test_send_at_and_expires_at_beyond_the_horizon_are_invalid() -> None:
    horizon = HoldHorizon(now=NOW)
    value = event(send_at="9999-12-31T23:59:59Z", expires_at="2027-11-24T12:00:01Z")
    parsed = parse_event(orjson.dumps(value), max_bytes=MAX_BYTES, horizon=horizon)
    assert parsed == Invalid(
        "field 'send_at' (9999-12-31T23:59:59Z) is more than 365 days ahead; events may name "
        "at most 2027-11-24T12:00:00+00:00 (CLARION_MAX_HOLD is 31536000 seconds); "
        "field 'expires_at' (2027-11-24T12:00:01Z) is more than 365 days ahead; events may "
        "name at most 2027-11-24T12:00:00+00:00 (CLARION_MAX_HOLD is 31536000 seconds)"
    )


def test_the_horizon_follows_the_setting() -> None:
    horizon = HoldHorizon(now=NOW, max_hold=90.0)
    value = orjson.dumps(event(send_at="2026-11-24T12:01:31Z"))
    parsed = parse_event(value, max_bytes=MAX_BYTES, horizon=horizon)
    assert isinstance(parsed, Invalid)
    assert parsed.reason.startswith(
        "field 'send_at' (2026-11-24T12:01:31Z) is more than 90 seconds"
    )
    # Without a clock (the JSON Schema's view), only the format is checked.
    assert not isinstance(parse_event(value, max_bytes=MAX_BYTES), Invalid)
