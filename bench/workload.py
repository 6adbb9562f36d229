"""The events and users of the route, pipeline and scale benches: one workload, fair ratios.

About 280 bytes of JSON per event, keyed by user; every user has email and in-app on, and
has opted out of email for the ``social`` category, so most events become one email and one
in-app item, and some only the in-app item.
"""

from __future__ import annotations

import random

import orjson

CATEGORIES = ("billing", "security", "social", "product")


def make_event(n: int, users: int, rng: random.Random) -> tuple[bytes, bytes]:
    user = f"user-{rng.randrange(users)}"
    value = {
        "event_id": f"evt-{n:09d}",
        "user_id": user,
        "category": rng.choice(CATEGORIES),
        "priority": rng.choice(("high", "normal", "critical")),
        "title": "Your weekly account summary is ready",
        "body": "Hello! Three new invoices were issued and one payment is pending review.",
        "created_at": "2026-11-23T10:00:00+00:00",
        "tenant_id": "acme",
    }
    return user.encode(), orjson.dumps(value)


def make_events(events: int, users: int, *, seed: int = 7) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return [make_event(n, users, rng) for n in range(events)]


def make_preferences(
    user: str,
    *,
    timezone: str = "Europe/Berlin",
    in_app: bool = True,
    mute_social_email: bool = True,
) -> bytes:
    """A user with an email address and no quiet hours; by default in-app too, and social
    email muted. The one preferences builder of the benches."""
    value: dict[str, object] = {
        "user_id": user,
        "timezone": timezone,
        "addresses": {"email": f"{user}@example.com"},
        "channels": {
            "email": True,
            "sms": False,
            "push": False,
            "in_app": in_app,
            "webhook": False,
        },
    }
    if mute_social_email:
        value["categories"] = {"social": {"email": False}}
    return orjson.dumps(value)


def all_preferences(users: int) -> list[tuple[bytes, bytes]]:
    return [(f"user-{u}".encode(), make_preferences(f"user-{u}")) for u in range(users)]


def mean_size(messages: list[tuple[bytes, bytes]]) -> float:
    return sum(len(value) for _, value in messages) / len(messages)
