"""The in-app inbox over HTTP beyond the table view: read marks and a Server-Sent Events stream.

``POST /users/{user_id}/inbox/read`` publishes a read mark (all items, or ``notification_ids``)
to the inbox commands topic and answers 202: the owner applies it to the table.

``GET /users/{user_id}/inbox/stream`` streams new inbox items as SSE (``id`` = the item's
sequence number). A client resuming with ``Last-Event-ID`` first gets what it missed from
the table, then live items. Each connection buffers at most ``InboxFeed.buffer_size``
items: a client that falls further behind is disconnected and resumes from the table, so
a slow reader cannot grow the worker's memory. A request reaching a worker that does not
hold the user is redirected (307) to the one that does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import faust
import orjson
from aiohttp import web as aiohttp_web
from aiokafka.errors import KafkaError

from agents.inbox import InboxFeed, mark_read_command
from agents.records_out import utc_iso
from pipeline.web.owners import Owners
from pipeline.web.responses import error_response, json_response
from pipeline.web.views import Authorize
from schemas.partitioner import partition_for_key
from tables.inbox_rows import UserInbox
from tables.rows import StagedRows
from tables.txstore import NotReadyError

if TYPE_CHECKING:
    from pipeline.app import Clarion

_KEEPALIVE_SECONDS = 15.0
_MAX_IDS = 1000
# Stored items are read and sent this many at a time: items can be large (64 KiB bodies),
# and a catching-up client need not have the whole inbox in memory at once.
_CATCH_UP_CHUNK = 10


def register_inbox_live(clarion: Clarion, owners: Owners, authorize: Authorize) -> None:
    app = clarion.app
    inbox, feed = clarion.inbox_table, clarion.inbox_feed
    topic = clarion.topics.inbox_commands

    @app.page("/users/{user_id}/inbox/read")
    class MarkRead(faust.web.View):
        async def post(self, request: Any, user_id: str) -> Any:
            denied = await authorize(self, request, "write")
            if denied is not None:
                return denied
            try:
                raw = await request.read()
                body = orjson.loads(raw) if raw.strip() else {}
                ids = body.get("notification_ids")
                if ids is not None and (
                    not isinstance(ids, list)
                    or len(ids) > _MAX_IDS
                    or not all(isinstance(i, str) for i in ids)
                ):
                    raise ValueError  # noqa: TRY301 - one answer for every malformed body
            except (orjson.JSONDecodeError, ValueError, AttributeError):
                detail = (
                    'expected {"notification_ids": [...]} (at most 1000 ids), '
                    "or an empty body to mark everything read"
                )
                return error_response(self, 400, "bad request", detail)
            key = user_id.encode()
            command = mark_read_command(user_id, ids, utc_iso(clarion.clock()))
            partition = partition_for_key(key, clarion.settings.partitions)
            try:
                await app.producer.send_and_wait(topic, key, command, partition, None, None)
            except KafkaError as exc:
                refused = error_response(self, 503, "broker unavailable", repr(exc))
                refused.headers["Retry-After"] = "5"
                return refused
            marking = ids if ids is not None else "all"
            return json_response(self, {"user_id": user_id, "marking": marking}, status=202)

    @app.page("/users/{user_id}/inbox/stream")
    async def stream(web: Any, request: Any, user_id: str) -> Any:
        denied = await authorize(web, request, "read")
        if denied is not None:
            return denied
        partition = owners.partition_of(user_id)
        if not owners.is_local(partition):
            owner = await owners.owner_url(partition)
            if owner is None:
                return error_response(web, 503, "partition moving", "retry shortly")
            location = request.url.with_scheme(owner.scheme).with_host(owner.host or "")
            raise aiohttp_web.HTTPTemporaryRedirect(location=str(location.with_port(owner.port)))
        last_seen = _last_event_id(request)
        user_inbox = UserInbox(StagedRows(inbox, partition), user_id)
        return await _serve(request, user_inbox, feed, last_seen)


def _last_event_id(request: Any) -> int:
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or "0"
    if raw.isascii() and raw.isdigit():  # isdigit() alone lets "²" through to int()
        with contextlib.suppress(ValueError):  # int() refuses over 4300 digits
            return int(raw)
    return 0


async def _serve(
    request: Any, inbox: UserInbox, feed: InboxFeed, last_seen: int
) -> aiohttp_web.StreamResponse:
    response = aiohttp_web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    # Subscribe before reading the table, so nothing falls between the two.
    subscription = feed.subscribe(inbox.user_id)
    try:
        # Until caught up, or the partition moved away (the feed then ends every stream).
        while not subscription.overflowed.is_set() and (
            stored := inbox.after(last_seen, _CATCH_UP_CHUNK)
        ):
            for item in stored:
                await response.write(_event(item))
                last_seen = item["seq"]
        overflow = asyncio.ensure_future(subscription.overflowed.wait())
        try:
            while not overflow.done():
                getter = asyncio.ensure_future(subscription.queue.get())
                done, _ = await asyncio.wait(
                    {getter, overflow},
                    timeout=_KEEPALIVE_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter not in done:
                    getter.cancel()
                    if not done:
                        await response.write(b": keepalive\n\n")
                    continue
                item = getter.result()
                if item["seq"] > last_seen:
                    await response.write(_event(item))
                    last_seen = item["seq"]
        finally:
            overflow.cancel()
    except ConnectionResetError:
        return response  # the client went away
    except NotReadyError:
        pass  # the partition moved away while the stream caught up: end it, the client resumes
    finally:
        feed.unsubscribe(subscription)
    # The buffer overflowed or the partition moved: end the stream; the client resumes.
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _event(item: Any) -> bytes:
    public = {k: v for k, v in item.items() if k != "seq"}
    return b"id: %d\nevent: notification\ndata: %s\n\n" % (item["seq"], orjson.dumps(public))
