"""Table views for data engineers, answered by whichever worker holds the key.

A request to any worker is answered from the tables of the worker that owns the key's
partition (see :mod:`pipeline.web.owners`): locally when that is this worker, otherwise by
forwarding it there.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp
import faust
import orjson

from agents.dispatch import iso_from_millis
from pipeline.web.owners import FORWARDED, Owners, moving
from pipeline.web.responses import error_response, json_response
from tables.inbox import InvalidCursorError
from tables.inbox_rows import UserInbox
from tables.rows import StagedRows
from tables.status_history import current_status
from tables.timers import DIGEST, item_prefix, user_prefix
from tables.txstore import NotReadyError
from tables.user_notifications import user_notifications_prefix

if TYPE_CHECKING:
    from pipeline.app import Clarion

Authorize = Callable[[Any, Any, str], Awaitable[Any]]

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_STATUS_FETCH_TIMEOUT = aiohttp.ClientTimeout(total=5)


class BadRequestError(ValueError):
    """A query parameter the caller must fix; the message says how."""


def register_views(
    clarion: Clarion, owners: Owners, user_state_owners: Owners, authorize: Authorize
) -> None:
    """``owners``: of the store runtime's state (status histories, inboxes);
    ``user_state_owners``: of the route runtime's state (preferences, timers)."""
    app = clarion.app
    views = _Views(clarion=clarion, owners=owners)

    def read_view(
        answer: Callable[[Any, Any, str, int], Awaitable[Any]], owners: Owners = owners
    ) -> Callable[..., Awaitable[Any]]:
        """A GET view on one key: authorised, routed to the owner, bad input made a 400."""

        async def get(web: Any, request: Any, **match: str) -> Any:
            denied = await authorize(web, request, "read")
            if denied is not None:
                return denied
            (key,) = match.values()

            async def here(web: Any, request: Any, partition: int) -> Any:
                try:
                    return await answer(web, request, key, partition)
                except BadRequestError as exc:
                    return error_response(web, 400, "bad request", str(exc))
                except NotReadyError:
                    # Assigned here, its state still being recovered (or just moved away).
                    return moving(web, partition)

            return await owners.answer(web, request, key, here)

        return get

    on_route = user_state_owners
    app.page("/users/{user_id}/preferences")(read_view(views.preferences, on_route))
    app.page("/users/{user_id}/notifications")(read_view(views.notifications, on_route))
    app.page("/notifications/{notification_id}")(read_view(views.notification))
    app.page("/users/{user_id}/inbox")(read_view(views.inbox))
    app.page("/users/{user_id}/digests/pending")(read_view(views.pending_digests, on_route))

    @app.page("/internal/statuses")
    class LocalStatuses(faust.web.View):
        """Status histories this worker holds, for the notifications view of another worker."""

        async def post(self, request: Any) -> Any:
            denied = await authorize(self, request, "read")
            if denied is not None:
                return denied
            try:
                ids = orjson.loads(await request.read())["ids"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                ids = None
            if not isinstance(ids, list):  # {"ids": null} or {"ids": 5} used to be a 500
                return error_response(self, 400, "bad request", 'expected {"ids": [...]}')
            return json_response(self, views.local_statuses(ids))


class _Views:
    def __init__(self, *, clarion: Clarion, owners: Owners) -> None:
        self.clarion = clarion
        self.owners = owners
        self.timers = clarion.dispatcher.timers

    async def preferences(self, web: Any, _request: Any, user_id: str, _partition: int) -> Any:
        found = self.clarion.preferences.get(user_id)
        if found is None:
            return error_response(web, 404, "not found", f"no preferences for user {user_id!r}")
        return json_response(web, found.asdict())

    async def notification(
        self, web: Any, _request: Any, notification_id: str, _partition: int
    ) -> Any:
        history = self.clarion.statuses.get(notification_id)
        if history is None:
            detail = f"no status recorded for {notification_id!r}"
            return error_response(web, 404, "not found", detail)
        return json_response(web, {**history, "status": current_status(history)})

    async def notifications(self, web: Any, request: Any, user_id: str, partition: int) -> Any:
        limit = _limit(request)
        prefix = user_notifications_prefix(user_id)
        after = _decode_cursor(request.query.get("cursor"), prefix)
        rows: list[dict[str, Any]] = []
        last_key = None
        for key, row in self.timers.rows(partition, prefix, after=after):
            if len(rows) == limit:
                break
            rows.append({k: v for k, v in row.items() if k != "due"})
            last_key = key
        else:
            last_key = None
        statuses = await self._statuses([row["notification_id"] for row in rows], request)
        for row in rows:
            history = statuses.get(row["notification_id"])
            row["status"] = current_status(history) if history else None
        cursor = _encode_cursor(last_key, prefix) if last_key is not None else None
        return json_response(web, {"user_id": user_id, "items": rows, "next_cursor": cursor})

    async def inbox(self, web: Any, request: Any, user_id: str, partition: int) -> Any:
        inbox = UserInbox(StagedRows(self.clarion.inbox_table, partition), user_id)
        try:
            items, cursor = inbox.page(_limit(request), request.query.get("cursor"))
        except InvalidCursorError as exc:
            raise BadRequestError(str(exc)) from None
        return json_response(
            web,
            {"user_id": user_id, "unread": inbox.unread(), "items": items, "next_cursor": cursor},
        )

    async def pending_digests(self, web: Any, _request: Any, user_id: str, partition: int) -> Any:
        windows = []
        for _, header in self.timers.rows(partition, user_prefix(DIGEST, user_id)):
            start = header["start"]
            items = [item for _, item in self.timers.rows(partition, item_prefix(user_id, start))]
            windows.append(
                {
                    "window_start": iso_from_millis(start),
                    "window_end": iso_from_millis(header["end"]),
                    "due": iso_from_millis(header["due"]),
                    "count": len(items),
                    "event_ids": [item["event"]["event_id"] for item in items],
                    "channels": sorted({c for item in items for c in item["channels"]}),
                }
            )
        return json_response(web, {"user_id": user_id, "digests": windows})

    def local_statuses(self, ids: list[Any]) -> dict[str, Any]:
        """The histories of ``ids`` held here; ids of other partitions are left out."""
        found: dict[str, Any] = {}
        for notification_id in ids:
            if not isinstance(notification_id, str):
                continue
            if not self.owners.is_local(self.owners.partition_of(notification_id)):
                continue
            try:
                history = self.clarion.statuses.get(notification_id)
            except NotReadyError:
                continue
            if history is not None:
                found[notification_id] = history
        return found

    async def _statuses(self, ids: list[str], request: Any) -> dict[str, Any]:
        """Status histories of ``ids``, from this worker and, in one request each, the others."""
        found: dict[str, Any] = {}
        remote: dict[str, list[str]] = defaultdict(list)
        for notification_id in ids:
            partition = self.owners.partition_of(notification_id)
            if self.owners.is_local(partition):
                found.update(self.local_statuses([notification_id]))
            elif (owner := await self.owners.owner_url(partition)) is not None:
                remote[str(owner)].append(notification_id)
        headers = {FORWARDED: "1"}
        if "Authorization" in request.headers:
            headers["Authorization"] = request.headers["Authorization"]
        session = self.owners.session()

        async def fetch(owner: str, wanted: list[str]) -> dict[str, Any]:
            url = owner.rstrip("/") + "/internal/statuses"
            try:
                async with session.post(
                    url, json={"ids": wanted}, headers=headers, timeout=_STATUS_FETCH_TIMEOUT
                ) as reply:
                    result: dict[str, Any] = await reply.json() if reply.status == 200 else {}
                    return result
            except (aiohttp.ClientError, TimeoutError):
                return {}  # statuses are shown when available; the list still answers

        for answer in await asyncio.gather(*(fetch(o, w) for o, w in remote.items())):
            found.update(answer)
        return found


def _limit(request: Any) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    # isdigit() alone lets "²" through to int(), and int() refuses over 4300 digits: both 500s.
    limit = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 0
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequestError(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw!r}")
    return limit


def _encode_cursor(key: bytes, prefix: bytes) -> str:
    return base64.urlsafe_b64encode(key[len(prefix) :]).decode().rstrip("=")


def _decode_cursor(cursor: str | None, prefix: bytes) -> bytes | None:
    if not cursor:
        return None
    try:
        return prefix + base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise BadRequestError(f"invalid cursor {cursor!r}") from None
