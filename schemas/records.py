"""Faust Records for every value Clarion reads or writes (see shared/CONTRACT.md)."""

from __future__ import annotations

from typing import Any

import faust

CHANNELS: tuple[str, ...] = ("email", "sms", "push", "in_app", "webhook")
PRIORITIES: tuple[str, ...] = ("critical", "high", "normal", "low")
STATUSES: tuple[str, ...] = (
    "accepted",
    "rejected",
    "duplicate",
    "suppressed",
    "deferred",
    "digested",
    "queued",
    "sending",
    "sent",
    "retrying",
    "failed",
    "dead_lettered",
    "expired",
    "delivered",
    "read",
)


class _Record(faust.Record, abstract=True, include_metadata=False, serializer="json"):
    """Plain JSON on the wire: no faust metadata, so any producer can write these."""


class NotificationEvent(_Record):
    event_id: str
    user_id: str
    category: str
    priority: str
    template: str | None = None
    data: dict[str, Any] | None = None
    title: str | None = None
    body: str | None = None
    channels: list[str] | None = None
    send_at: str | None = None
    expires_at: str | None = None
    dedupe_key: str | None = None
    locale: str | None = None
    tenant_id: str | None = None
    created_at: str | None = None


class Addresses(_Record):
    email: str | None = None
    phone: str | None = None
    push_tokens: list[str] | None = None
    webhook_url: str | None = None


class QuietHours(_Record):
    start: str
    end: str


class DigestSettings(_Record):
    enabled: bool = True
    window: str = "hourly"


class UserPreferences(_Record):
    user_id: str
    timezone: str = "UTC"
    locale: str | None = None
    addresses: Addresses | None = None
    channels: dict[str, bool] | None = None
    categories: dict[str, dict[str, bool]] | None = None
    quiet_hours: QuietHours | None = None
    digest: DigestSettings | None = None
    caps: dict[str, int] | None = None


class Delivery(_Record):
    notification_id: str
    user_id: str
    channel: str
    address: str
    subject: str | None
    body: str
    event_ids: list[str]
    priority: str
    category: str
    created_at: str
    html: str | None = None
    locale: str | None = None
    tenant_id: str | None = None
    attempt: int = 1
    not_before: str | None = None
    expires_at: str | None = None


class StatusChange(_Record):
    notification_id: str
    event_ids: list[str]
    user_id: str | None
    channel: str | None
    status: str
    reason: str | None
    at: str


class InvalidRecord(_Record):
    raw: str
    raw_encoding: str
    raw_bytes: int
    raw_sha256: str
    raw_truncated: bool
    error: str
    topic: str
    partition: int
    offset: int | None
    received_at: str
