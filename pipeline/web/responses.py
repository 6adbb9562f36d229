"""JSON responses in the contract's shape: errors are ``{"error": ..., "detail": ...}``."""

from __future__ import annotations

from typing import Any

import orjson

from agents.records_out import encode_records

JSON = "application/json"


def json_response(web: Any, value: object, *, status: int = 200) -> Any:
    return web.bytes(orjson.dumps(value, default=encode_records), content_type=JSON, status=status)


def error_response(web: Any, status: int, error: str, detail: object = None) -> Any:
    return json_response(web, {"error": error, "detail": detail}, status=status)
