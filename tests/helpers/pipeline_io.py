"""What agent tests send to a pipeline and how they read its output."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from tests.helpers.kafka import TopicReader

if TYPE_CHECKING:
    from tests.agents.conftest import Pipeline


IN_APP_ONLY = {"email": False, "sms": False, "push": False, "in_app": True, "webhook": False}


def preferences(user_id: str, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "user_id": user_id,
        "timezone": "Europe/Paris",
        "locale": "en",
        "addresses": {
            "email": f"{user_id}@example.com",
            "phone": "+33612345678",
            "push_tokens": ["tok-1"],
            "webhook_url": "https://hooks.example.com/clarion",
        },
        "channels": {"email": True, "sms": True, "push": False, "in_app": True, "webhook": False},
        "categories": {"marketing": {"email": False, "sms": False}},
    }
    value.update(overrides)
    return value


def event(event_id: str, user_id: str, **overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "event_id": event_id,
        "user_id": user_id,
        "category": "billing",
        "priority": "high",
        "title": f"Invoice {event_id}",
        "body": "Your invoice is ready.",
    }
    value.update(overrides)
    return value


def wait_for_preferences(
    pipeline: Pipeline, user_id: str, check: Any = None, timeout: float = 60.0
) -> None:
    """Poll the worker's view until the preferences are in its table."""
    _poll_preferences(pipeline, user_id, present=True, check=check, timeout=timeout)


def wait_for_no_preferences(pipeline: Pipeline, user_id: str, timeout: float = 60.0) -> None:
    """Poll the worker's view until the user's preferences are gone (a tombstone applied)."""
    _poll_preferences(pipeline, user_id, present=False, check=None, timeout=timeout)


def _poll_preferences(
    pipeline: Pipeline, user_id: str, *, present: bool, check: Any, timeout: float
) -> None:
    port = pipeline.workers[-1].web_port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/users/{user_id}/preferences", timeout=2
            ) as r:
                body = json.loads(r.read())
                if present and (check is None or check(body)):
                    return
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and not present:
                return
            # 404: not there yet; 503: the worker's partitions are still being assigned.
            if exc.code not in {404, 503}:
                raise
        except OSError:
            pass
        time.sleep(0.1)  # polling interval of the deadline loop
    state = "reached" if present else "left"
    raise AssertionError(f"preferences of {user_id} never {state} the table")


def deliveries(reader: TopicReader, pipeline: Pipeline) -> list[dict[str, Any]]:
    prefix = f"{pipeline.prefix}deliver."
    return [
        r.json() | {"_topic": r.topic, "_key": r.key}
        for r in reader.records
        if r.topic.startswith(prefix)
    ]


def statuses(reader: TopicReader, pipeline: Pipeline) -> list[dict[str, Any]]:
    return [r.json() for r in reader.on(pipeline.topics.status)]


def all_topics(pipeline: Pipeline) -> list[str]:
    t = pipeline.topics
    return [
        *(t.deliver(c) for c in ("email", "sms", "push", "in_app", "webhook")),
        t.status,
        t.invalid,
    ]
