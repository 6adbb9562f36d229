"""The JSON Schema documents say what the Records and the validators say, and nothing else."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from schemas.json_schema import SCHEMA_NAMES, load_schema
from schemas.preference_checks import (
    CLOCK_TIME_PATTERN,
    DIGEST_WINDOWS,
    EMAIL_PATTERN,
    PHONE_PATTERN,
    WEBHOOK_URL_PATTERN,
)
from schemas.records import (
    CHANNELS,
    PRIORITIES,
    STATUSES,
    Addresses,
    Delivery,
    DigestSettings,
    InvalidRecord,
    NotificationEvent,
    QuietHours,
    StatusChange,
    UserPreferences,
)
from schemas.template_names import TEMPLATE_NAME_PATTERN
from schemas.timestamps import TIMESTAMP_PATTERN
from schemas.validation import Invalid, parse_event, parse_preferences

MAX_BYTES = 65536
_ABSENT = object()  # a sample value that leaves the field out

RECORDS: list[tuple[str, Any]] = [
    ("notification_event", NotificationEvent),
    ("user_preferences", UserPreferences),
    ("delivery", Delivery),
    ("status_change", StatusChange),
    ("invalid_record", InvalidRecord),
]
NESTED_PREFERENCE_RECORDS: list[tuple[str, Any]] = [
    ("addresses", Addresses),
    ("quiet_hours", QuietHours),
    ("digest", DigestSettings),
]


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


def field_names(record: Any) -> set[str]:
    return set(record._options.fields)


def fields_without_defaults(record: Any) -> set[str]:
    return {name for name in record._options.fields if name not in record._options.defaults}


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, subschema) in a schema document."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


# --- documents and loading --------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_is_a_valid_draft_2020_12_document(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)
    assert schema["description"]


def test_load_schema_takes_the_name_with_or_without_json() -> None:
    assert load_schema("delivery.json") == load_schema("delivery")


def test_load_schema_returns_a_copy_callers_may_change() -> None:
    load_schema("delivery")["title"] = "changed"
    assert load_schema("delivery")["title"] == "Delivery"


@pytest.mark.parametrize("name", ["records", "../records.py", "jsonschema/delivery", ""])
def test_load_schema_refuses_names_outside_the_list(name: str) -> None:
    with pytest.raises(ValueError, match="unknown schema"):
        load_schema(name)


def test_every_record_has_a_schema() -> None:
    assert {name for name, _ in RECORDS} == set(SCHEMA_NAMES)


# --- the schemas describe the records ---------------------------------------------------


@pytest.mark.parametrize(("name", "record"), RECORDS)
def test_schema_title_is_the_record_name(name: str, record: Any) -> None:
    assert load_schema(name)["title"] == record.__name__


@pytest.mark.parametrize(("name", "record"), RECORDS)
def test_schema_properties_are_the_record_fields(name: str, record: Any) -> None:
    assert set(load_schema(name)["properties"]) == field_names(record)


@pytest.mark.parametrize(("name", "record"), RECORDS)
def test_schema_requires_exactly_the_fields_without_defaults(name: str, record: Any) -> None:
    required = load_schema(name)["required"]
    assert len(required) == len(set(required))
    assert set(required) == fields_without_defaults(record)


@pytest.mark.parametrize(("field", "record"), NESTED_PREFERENCE_RECORDS)
def test_nested_preference_objects_match_their_records(field: str, record: Any) -> None:
    nested = load_schema("user_preferences")["properties"][field]
    assert set(nested["properties"]) == field_names(record)
    assert set(nested.get("required", [])) == fields_without_defaults(record)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_records_accept_unknown_fields_and_so_do_their_schemas(name: str) -> None:
    assert load_schema(name)["additionalProperties"] is True


@pytest.mark.parametrize(
    ("definition", "values"),
    [("priority", PRIORITIES), ("channel", CHANNELS), ("status", STATUSES)],
)
def test_enums_are_the_record_constants(definition: str, values: tuple[str, ...]) -> None:
    found = [
        schema["$defs"][definition]["enum"]
        for schema in map(load_schema, SCHEMA_NAMES)
        if definition in schema.get("$defs", {})
    ]
    assert found, f"no schema defines {definition}"
    assert all(enum == list(values) for enum in found)


def test_enums_live_where_the_constant_checks_find_them() -> None:
    for name in SCHEMA_NAMES:
        enums = [
            path
            for path, node in walk(load_schema(name))
            if isinstance(node, dict) and "enum" in node
        ]
        allowed = {"/$defs/priority", "/$defs/channel", "/$defs/status"}
        extra = {
            "/properties/digest/properties/window",
            "/properties/raw_encoding",
        }
        assert set(enums) <= allowed | extra, name


def test_digest_windows_are_the_validator_windows() -> None:
    window = load_schema("user_preferences")["properties"]["digest"]["properties"]["window"]
    assert window["enum"] == [*DIGEST_WINDOWS, None]


def test_every_timestamp_pattern_is_the_validator_pattern() -> None:
    patterns = [
        node["pattern"]
        for name in SCHEMA_NAMES
        for path, node in walk(load_schema(name))
        if path.endswith("timestamp")
    ]
    assert len(patterns) == 4
    assert set(patterns) == {TIMESTAMP_PATTERN}


def test_template_name_pattern_is_the_validator_pattern() -> None:
    template = load_schema("notification_event")["properties"]["template"]
    assert template["pattern"] == TEMPLATE_NAME_PATTERN


def test_address_and_clock_patterns_are_the_validator_patterns() -> None:
    properties = load_schema("user_preferences")["properties"]
    addresses = properties["addresses"]["properties"]
    assert addresses["email"]["pattern"] == EMAIL_PATTERN
    assert addresses["phone"]["pattern"] == PHONE_PATTERN
    assert addresses["webhook_url"]["pattern"] == WEBHOOK_URL_PATTERN
    clock = load_schema("user_preferences")["$defs"]["clock_time"]
    assert clock["pattern"] == CLOCK_TIME_PATTERN


# --- the schemas accept what the validators accept ---------------------------------------


def event(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": "evt-1",
        "user_id": "user-1",
        "category": "billing",
        "priority": "normal",
        "title": "Invoice ready",
        "body": "Your invoice is ready.",
    }
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not _ABSENT}


def event_accepted(value: dict[str, Any]) -> bool:
    return not isinstance(parse_event(orjson.dumps(value), max_bytes=MAX_BYTES), Invalid)


def preferences_accepted(value: dict[str, Any]) -> bool:
    return not isinstance(parse_preferences(orjson.dumps(value), max_bytes=MAX_BYTES), Invalid)


EVENT_SAMPLES: list[tuple[dict[str, Any], bool]] = [
    (event(), True),
    (event(title=_ABSENT, body=_ABSENT, template="invoice", data={"n": 1}), True),
    (event(title=_ABSENT, body=_ABSENT, template="invoice"), True),
    (event(template="invoice", data=None), True),
    (event(channels=["email", "in_app", "webhook"]), True),
    (event(send_at="2024-05-01T09:30:00Z", expires_at="2024-05-01T11:30:00.5+02:00"), True),
    (event(created_at="2024-05-01T09:30:00.123456789-05:30"), True),
    (event(dedupe_key="k", locale="en", tenant_id="t", extra={"kept": True}), True),
    (event(channels=None, send_at=None, dedupe_key=None), True),
    (event(event_id="e" * 256), True),
    (event(event_id=_ABSENT), False),
    (event(user_id=""), False),
    (event(user_id="u" * 257), False),
    (event(category=None), False),
    (event(priority="urgent"), False),
    (event(priority=None), False),
    (event(title=_ABSENT), False),
    (event(title=_ABSENT, body=_ABSENT), False),
    (event(title=None, body=None, template=None), False),
    (event(template=""), False),
    (event(template=5), False),
    (event(template="../secrets"), False),
    (event(template="a..b"), False),
    (event(template="t" * 129), False),
    (event(template="Invoice-2.v1"), True),
    (event(locale="en" + "-abcdefgh" * 30), False),
    (event(data=[1, 2]), False),
    (event(body=5), False),
    (event(channels=[]), False),
    (event(channels=["fax"]), False),
    (event(channels=["sms", "sms"]), False),
    (event(channels="email"), False),
    (event(send_at="2024-05-01T09:30:00"), False),
    (event(send_at="2024-05-01"), False),
    (event(expires_at="20240501T093000Z"), False),
    (event(created_at=1714555800), False),
    (event(dedupe_key=5), False),
    (event(locale=["en"]), False),
    (event(tenant_id=True), False),
]


@pytest.mark.parametrize(("value", "valid"), EVENT_SAMPLES)
def test_event_schema_and_parse_event_agree_on_samples(value: dict[str, Any], valid: bool) -> None:
    assert event_accepted(value) is valid
    assert validator("notification_event").is_valid(value) is valid


_EVENT_POOLS: dict[str, tuple[list[Any], list[Any]]] = {
    # field: (values both accept, values both reject); _ABSENT leaves the field out
    "event_id": (["evt-1", "e" * 256], ["", "e" * 257, 5, None, _ABSENT]),
    "user_id": (["user-1"], ["", 7, None, _ABSENT]),
    "category": (["billing"], ["", None, _ABSENT]),
    "priority": (list(PRIORITIES), ["urgent", "", 1, None, _ABSENT]),
    "template": (["invoice", None, _ABSENT], ["", 5]),
    "data": ([{}, {"a": [1]}, None, _ABSENT], [[1], "x"]),
    "title": (["t", "", None, _ABSENT], [5]),
    "body": (["b", "", None, _ABSENT], [[]]),
    "channels": (
        [["email"], ["push", "sms"], None, _ABSENT],
        [[], ["fax"], ["sms", "sms"], "email", [1]],
    ),
    "send_at": (["2024-05-01T09:30:00Z", None, _ABSENT], ["2024-05-01T09:30:00", "soon", 5]),
    "expires_at": (["2024-05-01T09:30:00.5+02:00", _ABSENT], ["2024-05-01T09:30+02:00"]),
    "created_at": (["2024-05-01T09:30:00-05:00", _ABSENT], [1714555800]),
    "dedupe_key": (["k", "", None, _ABSENT], [5]),
    "locale": (["en-GB", _ABSENT], [["en"]]),
    "tenant_id": (["acme", _ABSENT], [False]),
    "trace": ([_ABSENT, {"kept": 1}, "x"], []),
}


def _random_event(rng: random.Random) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for field, (good, bad) in _EVENT_POOLS.items():
        choice = rng.choice(bad) if bad and rng.random() < 0.06 else rng.choice(good)
        if choice is not _ABSENT:
            value[field] = choice
    return value


def test_event_schema_and_parse_event_agree_on_random_events() -> None:
    rng = random.Random(7)
    schema = validator("notification_event")
    outcomes = {True: 0, False: 0}
    for _ in range(3000):
        value = _random_event(rng)
        accepted = event_accepted(value)
        assert schema.is_valid(value) is accepted, value
        outcomes[accepted] += 1
    assert min(outcomes.values()) > 300, outcomes


_PREFERENCE_POOLS: dict[str, tuple[list[Any], list[Any]]] = {
    "user_id": (["user-1"], ["", 5, None, _ABSENT]),
    "timezone": (["Europe/Paris", "UTC", None, _ABSENT], ["", 5]),
    "locale": (["fr-FR", None, _ABSENT], [1]),
    "addresses": (
        [
            {"email": "a@b.c", "phone": "+33612345678"},
            {"push_tokens": ["t1"], "webhook_url": "https://h.example/x?y=1"},
            {"email": None, "extra": 1},
            None,
            _ABSENT,
        ],
        [
            {"email": "a b@c.d"},
            {"email": "a@b@c"},
            {"phone": "0612345678"},
            {"push_tokens": [""]},
            {"push_tokens": "t"},
            {"webhook_url": "ftp://h.example"},
            {"webhook_url": "https://a b"},
            "a@b.c",
        ],
    ),
    "channels": (
        [{"email": True, "sms": False}, {}, None, _ABSENT],
        [{"fax": True}, {"sms": 1}, []],
    ),
    "categories": (
        [{"marketing": {"email": False}}, None, _ABSENT],
        [{"m": {"fax": True}}, {"m": True}, {"": {"sms": False}}, {"m": None}],
    ),
    "quiet_hours": (
        [{"start": "22:00", "end": "07:00"}, {"start": "00:00", "end": "23:59"}, None, _ABSENT],
        [
            {"start": "24:00", "end": "07:00"},
            {"start": "7:00", "end": "22:00"},
            {"start": "22:00"},
            {"start": None, "end": "07:00"},
            "22:00-07:00",
        ],
    ),
    "digest": (
        [{}, {"enabled": False}, {"window": "hourly"}, {"enabled": None, "window": None}, _ABSENT],
        [{"enabled": "yes"}, {"window": "daily"}, True],
    ),
    "caps": (
        [{"sms": 3, "email": 0}, {"push": 2.0}, None, _ABSENT],
        [{"sms": -1}, {"sms": 1.5}, {"sms": True}, {"sms": "3"}, {"fax": 1}, [1]],
    ),
    "theme": ([_ABSENT, "dark"], []),
}


def _random_preferences(rng: random.Random) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for field, (good, bad) in _PREFERENCE_POOLS.items():
        choice = rng.choice(bad) if bad and rng.random() < 0.07 else rng.choice(good)
        if choice is not _ABSENT:
            value[field] = choice
    return value


def test_preferences_schema_and_parse_preferences_agree_on_random_preferences() -> None:
    rng = random.Random(11)
    schema = validator("user_preferences")
    outcomes = {True: 0, False: 0}
    for _ in range(3000):
        value = _random_preferences(rng)
        accepted = preferences_accepted(value)
        assert schema.is_valid(value) is accepted, value
        outcomes[accepted] += 1
    assert min(outcomes.values()) > 300, outcomes


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("notification_event", event(send_at="2024-02-30T09:30:00Z")),
        # Nesting depth: JSON Schema can only say it by spelling out every level.
        ("notification_event", event(title=_ABSENT, body=_ABSENT, template="t", data=_deep(65))),
        ("user_preferences", {"user_id": "u", "theme": _deep(65)}),
        ("user_preferences", {"user_id": "u", "timezone": "Mars/Base"}),
        ("user_preferences", {"user_id": "u", "quiet_hours": {"start": "22:00", "end": "22:00"}}),
        ("user_preferences", {"user_id": "u", "addresses": {"webhook_url": "https://h:99999/"}}),
    ],
)
def test_schemas_are_looser_only_where_json_schema_cannot_say_the_rule(
    name: str, value: dict[str, Any]
) -> None:
    # Real calendar dates, the IANA database, comparing two fields and port ranges are
    # beyond a pattern; the descriptions state these rules and the validators enforce them.
    accepted = (
        event_accepted(value) if name == "notification_event" else preferences_accepted(value)
    )
    assert not accepted
    assert validator(name).is_valid(value)


# --- what Clarion writes matches its schemas --------------------------------------------


def test_parsed_records_serialize_to_what_their_schemas_accept() -> None:
    parsed_event = parse_event(
        orjson.dumps(event(template="t", channels=["sms"], send_at="2024-05-01T09:30:00Z")),
        max_bytes=MAX_BYTES,
    )
    assert isinstance(parsed_event, NotificationEvent)
    validator("notification_event").validate(orjson.loads(parsed_event.dumps()))

    preferences = {
        "user_id": "u",
        "addresses": {"email": "u@example.com"},
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "digest": {"enabled": False},
        "caps": {"sms": 2},
    }
    parsed_preferences = parse_preferences(orjson.dumps(preferences), max_bytes=MAX_BYTES)
    assert isinstance(parsed_preferences, UserPreferences)
    stored = parsed_preferences.dumps()
    validator("user_preferences").validate(orjson.loads(stored))
    # What the preferences table holds must read back as the same preferences.
    assert parse_preferences(stored, max_bytes=MAX_BYTES) == parsed_preferences


def test_output_records_match_their_schemas() -> None:
    delivery = Delivery(
        notification_id="n-1",
        user_id="u",
        channel="email",
        address="u@example.com",
        subject="Invoice",
        body="Your invoice.",
        event_ids=["evt-1"],
        priority="high",
        category="billing",
        created_at="2024-05-01T09:30:00.000Z",
    )
    status = StatusChange(
        notification_id="n-1",
        event_ids=["evt-1"],
        user_id="u",
        channel=None,
        status="accepted",
        reason=None,
        at="2024-05-01T09:30:00.000Z",
    )
    invalid = InvalidRecord(
        raw="{",
        raw_encoding="utf-8",
        raw_bytes=1,
        raw_sha256="021fb596db81e6d02bf3d2586ee3981fe519f275c0ac9ca76bbcf2ebb4097d96",
        raw_truncated=False,
        error="not JSON: unexpected end of data",
        topic="clarion.events",
        partition=3,
        offset=42,
        received_at="2024-05-01T09:30:00.000Z",
    )
    for name, record in [
        ("delivery", delivery),
        ("status_change", status),
        ("invalid_record", invalid),
    ]:
        validator(name).validate(orjson.loads(orjson.dumps(record.asdict())))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("delivery", {"channel": "fax"}),
        ("delivery", {"priority": "urgent"}),
        ("delivery", {"event_ids": []}),
        ("delivery", {"attempt": 0}),
        ("delivery", {"created_at": "2024-05-01T09:30:00"}),
        ("status_change", {"status": "lost"}),
        ("status_change", {"channel": "fax"}),
        ("invalid_record", {"raw_encoding": "latin-1"}),
        ("invalid_record", {"offset": -1}),
        ("invalid_record", {"raw_sha256": "not-hex"}),
        ("invalid_record", {"raw_bytes": -1}),
    ],
)
def test_output_schemas_reject_values_outside_the_contract(
    name: str, value: dict[str, Any]
) -> None:
    valid = {
        "delivery": {
            "notification_id": "n-1",
            "user_id": "u",
            "channel": "sms",
            "address": "+14155550123",
            "body": "b",
            "event_ids": ["e"],
            "priority": "low",
            "category": "social",
            "created_at": "2024-05-01T09:30:00Z",
        },
        "status_change": {
            "notification_id": "n-1",
            "event_ids": [],
            "status": "rejected",
            "at": "2024-05-01T09:30:00Z",
        },
        "invalid_record": {
            "raw": "",
            "raw_encoding": "base64",
            "raw_bytes": 0,
            "raw_sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "raw_truncated": False,
            "error": "e",
            "topic": "t",
            "partition": 0,
            "offset": 0,
            "received_at": "2024-05-01T09:30:00Z",
        },
    }[name]
    assert validator(name).is_valid(valid)
    assert not validator(name).is_valid(valid | value)
