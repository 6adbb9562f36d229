"""JSON responses in the contract's shape: errors are ``{"error": ..., "detail": ...}``."""

from __future__ import annotations

from typing import Any

import orjson

JSON = "application/json"


def json_response(web: Any, value: object, *, status: int = 200) -> Any:
    return web.bytes(orjson.dumps(value, default=_encode), content_type=JSON, status=status)


def error_response(web: Any, status: int, error: str, detail: object = None) -> Any:
    return json_response(web, {"error": error, "detail": detail}, status=status)


def _encode(value: Any) -> Any:
    # Faust Records nested in a Record's asdict() stay Records.
    if hasattr(value, "asdict"):
        return value.asdict()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")
