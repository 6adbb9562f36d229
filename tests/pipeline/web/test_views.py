"""The table views with two workers: every request answered, whichever worker it reaches."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import aiohttp
import pytest

from tests.helpers.deployment import Pipeline
from tests.helpers.kafka import produce_json
from tests.helpers.pipeline_io import IN_APP_ONLY, event, preferences
from tests.helpers.web import getter, poll, wait_ready
from tests.helpers.worker import WorkerProcess

pytestmark = pytest.mark.integration

USERS = [f"user-{n}" for n in range(8)]


async def two_ready_workers(
    pipeline: Pipeline, session: aiohttp.ClientSession
) -> list[WorkerProcess]:
    workers = [pipeline.worker().start(), pipeline.worker().start()]
    for worker in workers:
        await wait_ready(session, worker)
    return workers


async def test_views_answer_for_every_user_on_both_workers(pipeline: Pipeline) -> None:
    async with aiohttp.ClientSession() as session:
        workers = await two_ready_workers(pipeline, session)
        await produce_json(
            pipeline.bootstrap,
            pipeline.topics.preferences,
            [
                preferences(
                    user,
                    channels=IN_APP_ONLY,
                )
                for user in USERS
            ],
        )
        await produce_json(
            pipeline.bootstrap,
            pipeline.topics.events,
            [
                *(event(f"now-{user}", user, priority="critical") for user in USERS),
                *(event(f"later-{user}", user, priority="low") for user in USERS),
            ],
        )
        for user in USERS:
            for worker in workers:
                prefs = await poll(
                    getter(session, worker, f"/users/{user}/preferences"),
                    lambda status, _: status == 200,
                    what=f"preferences of {user}",
                )
                assert prefs["user_id"] == user
                listed = await poll(
                    getter(session, worker, f"/users/{user}/notifications"),
                    lambda status, body: (
                        status == 200 and any(i["status"] == "sent" for i in body["items"])
                    ),
                    what=f"notifications of {user}",
                )
                [item] = listed["items"]
                assert item["event_ids"] == [f"now-{user}"]
                assert item["channel"] == "in_app"
                history = await poll(
                    getter(session, worker, f"/notifications/{item['notification_id']}"),
                    lambda status, _: status == 200,
                    what="a notification's history",
                )
                assert [e["status"] for e in history["entries"]][-1] == "sent"
                inbox = await poll(
                    getter(session, worker, f"/users/{user}/inbox"),
                    lambda status, body: status == 200 and body["unread"] == 1,
                    what=f"inbox of {user}",
                )
                assert inbox["items"][0]["notification_id"] == item["notification_id"]
                pending = await poll(
                    getter(session, worker, f"/users/{user}/digests/pending"),
                    lambda status, body: status == 200 and body["digests"],
                    what=f"pending digest of {user}",
                )
                assert pending["digests"][0]["event_ids"] == [f"later-{user}"]

        # Read marks go through Kafka and come back in the view, from either worker.
        user = USERS[0]
        async with session.post(
            f"http://127.0.0.1:{workers[1].web_port}/users/{user}/inbox/read", json={}
        ) as reply:
            assert reply.status == 202
        await poll(
            getter(session, workers[0], f"/users/{user}/inbox"),
            lambda status, body: status == 200 and body["unread"] == 0,
            what="the read mark",
        )

        status, body = await getter(session, workers[0], "/notifications/ntf_nope")()
        assert (status, body["error"]) == (404, "not found")
        status, body = await getter(session, workers[1], f"/users/{user}/notifications?limit=0")()
        assert status == 400
        assert "limit" in body["detail"]


async def test_inbox_stream_sends_stored_then_live_items_and_resumes(pipeline: Pipeline) -> None:
    user = "streamer"
    async with aiohttp.ClientSession() as session:
        workers = await two_ready_workers(pipeline, session)
        await produce_json(
            pipeline.bootstrap,
            pipeline.topics.preferences,
            [
                preferences(
                    user,
                    channels=IN_APP_ONLY,
                )
            ],
        )
        await produce_json(
            pipeline.bootstrap, pipeline.topics.events, [event("first", user, priority="critical")]
        )
        await poll(
            getter(session, workers[0], f"/users/{user}/inbox"),
            lambda status, body: status == 200 and len(body["items"]) == 1,
            what="the first item",
        )
        sent = ["first"]
        for worker in workers:  # one of them redirects to the other
            url = f"http://127.0.0.1:{worker.web_port}/users/{user}/inbox/stream"
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=60)) as stream:
                assert stream.headers["Content-Type"].startswith("text/event-stream")
                # From the start: everything stored so far, in order, then the live item.
                stored = [await read_event(stream) for _ in sent]
                assert [e["data"]["event_ids"][0] for e in stored] == sent
                assert [int(e["id"]) for e in stored] == list(range(1, len(sent) + 1))
                sent.append(f"live-{worker.web_port}")
                await produce_json(
                    pipeline.bootstrap,
                    pipeline.topics.events,
                    [event(sent[-1], user, priority="critical")],
                )
                live = await read_event(stream)
                assert live["data"]["event_ids"] == [sent[-1]]
                last_id = live["id"]
        # Resuming after the last seen id gets nothing old again.
        await produce_json(
            pipeline.bootstrap, pipeline.topics.events, [event("after", user, priority="critical")]
        )
        url = f"http://127.0.0.1:{workers[0].web_port}/users/{user}/inbox/stream"
        async with session.get(url, headers={"Last-Event-ID": last_id}) as stream:
            resumed = await read_event(stream)
            assert resumed["data"]["event_ids"] == ["after"]
            assert int(resumed["id"]) == int(last_id) + 1


async def read_event(stream: aiohttp.ClientResponse) -> dict[str, Any]:
    """The next SSE event (comments skipped), with its data decoded."""
    import orjson  # noqa: PLC0415

    fields: dict[str, Any] = {}
    async with asyncio.timeout(60):
        while True:
            line = (await stream.content.readline()).decode().rstrip("\n")
            if not line:
                if "data" in fields:
                    fields["data"] = orjson.loads(fields["data"])
                    return fields
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value


async def test_views_need_a_read_key_when_keys_are_configured(pipeline: Pipeline) -> None:
    worker = pipeline.worker(CLARION_API_KEYS="reader-key:read,writer-key:write").start()
    url = f"http://127.0.0.1:{worker.web_port}/users/nobody/preferences"
    async with aiohttp.ClientSession() as session:

        async def status_with(key: str | None) -> int:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            async with session.get(url, headers=headers) as reply:
                return reply.status

        assert await status_with(None) == 401
        assert await status_with("wrong") == 401
        assert await status_with("writer-key") == 403
        # Authorised: the view answers (404: no preferences, or 503 while partitions settle).
        await poll(
            lambda: _pair(status_with("reader-key")),
            lambda status, _: status == 404,
            what="an authorised answer",
        )


async def _pair(status: Awaitable[int]) -> tuple[int, None]:
    return await status, None
