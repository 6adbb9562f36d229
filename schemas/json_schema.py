"""The JSON Schema documents (draft 2020-12) that producers and consumers validate against."""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson

SCHEMA_NAMES: tuple[str, ...] = (
    "notification_event",
    "user_preferences",
    "delivery",
    "status_change",
    "invalid_record",
)


def load_schema(name: str) -> dict[str, Any]:
    """A fresh copy of the schema called ``name`` (``"notification_event"`` or with ``.json``)."""
    stem = name.removesuffix(".json")
    # A fixed list, so a name from a web request cannot reach other files in the package.
    if stem not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; expected one of {', '.join(SCHEMA_NAMES)}")
    document = resources.files("schemas").joinpath("jsonschema", f"{stem}.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(document)
    return schema
