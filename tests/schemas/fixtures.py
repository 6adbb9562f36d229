"""Builders of the records the schema tests validate: one per record, overrides on top."""

from __future__ import annotations

from typing import Any

ABSENT = object()  # an override that removes the field


def event(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": "evt-1",
        "user_id": "user-1",
        "category": "billing",
        "priority": "high",
        "template": "invoice_ready",
        "data": {"amount": "12.00"},
    }
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not ABSENT}


def preferences(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "user_id": "user-1",
        "timezone": "Europe/Paris",
        "locale": "fr-FR",
        "addresses": {
            "email": "user-1@example.com",
            "phone": "+33612345678",
            "push_tokens": ["tok-1", "tok-2"],
            "webhook_url": "https://hooks.example.com/clarion?x=1",
        },
        "channels": {"email": True, "sms": False, "push": True, "in_app": True, "webhook": False},
        "categories": {"marketing": {"email": False, "sms": False}},
        "quiet_hours": {"start": "22:00", "end": "07:00"},
        "digest": {"enabled": True, "window": "hourly"},
        "caps": {"sms": 3, "email": 0},
    }
    value.update(overrides)
    return {k: v for k, v in value.items() if v is not ABSENT}
