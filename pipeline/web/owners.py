"""Which worker holds a key, and forwarding a request to it.

Every table and user-keyed topic has ``CLARION_PARTITIONS`` partitions and one worker holds
partition *p* of all of them, so the owner of a key is the owner of
``murmur2(key) % partitions``: for a user id, where its events and preferences go; for a
notification id, where its status records go. Faust's own ``table_route`` cannot be used: it
hashes the JSON-serialised key, while Clarion partitions by the raw key bytes.

Who holds *p* depends on which consumer group assigns it (the route runtime's for
preferences and timers, the store runtime's for status histories and inboxes), so
:class:`Owners` asks an :class:`OwnerSource`: :class:`pipeline.runtime.members.GroupOwners`
for one group.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
from yarl import URL

from pipeline.web.responses import error_response
from schemas.partitioner import partition_for_key

# Set on forwarded requests: a worker that gets one for a partition it does not hold does
# not forward it again (the assignment is changing), it answers 503.
FORWARDED = "X-Clarion-Forwarded"
_RETRY_AFTER = "2"
_PROXY_TIMEOUT = aiohttp.ClientTimeout(total=10)
# Headers of the original request worth passing on.
_PASSED_HEADERS = ("Authorization", "Accept", "Content-Type", "Last-Event-ID")

Handler = Callable[[Any, Any, int], Awaitable[Any]]


class OwnerSource(Protocol):
    """Who holds a partition, as one consumer group sees it."""

    def is_local(self, partition: int) -> bool:
        """Whether this worker holds ``partition`` now: answered without any I/O."""
        ...

    async def owner_url(self, partition: int) -> URL | None:
        """The web URL of the worker holding ``partition``; ``None`` while it is moving.

        Asynchronous because a source may have to ask the broker (briefly, bounded).
        """
        ...


@dataclass(kw_only=True)
class Owners:
    source: OwnerSource
    partitions: int
    _session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """One connection pool to the other workers, kept for the worker's lifetime."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=_PROXY_TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def partition_of(self, key: str) -> int:
        return partition_for_key(key.encode(), self.partitions)

    def is_local(self, partition: int) -> bool:
        return self.source.is_local(partition)

    async def owner_url(self, partition: int) -> URL | None:
        return await self.source.owner_url(partition)

    async def answer(self, web: Any, request: Any, key: str, handler: Handler) -> Any:
        """Run ``handler`` here if this worker holds ``key``, else return the owner's answer."""
        partition = self.partition_of(key)
        if self.is_local(partition):
            return await handler(web, request, partition)
        owner = await self.owner_url(partition)
        if owner is None or request.headers.get(FORWARDED):
            return moving(web, partition)
        return await self._forward(web, request, owner)

    async def _forward(self, web: Any, request: Any, owner: URL) -> Any:
        target = request.url.with_scheme(owner.scheme).with_host(owner.host or "")
        target = target.with_port(owner.port)
        headers = {
            name: request.headers[name] for name in _PASSED_HEADERS if name in request.headers
        }
        headers[FORWARDED] = "1"
        body = await request.read() if request.method in {"POST", "PUT", "PATCH"} else None
        try:
            async with self.session().request(
                request.method, target, headers=headers, data=body
            ) as reply:
                content = await reply.read()
                return web.bytes(
                    content,
                    content_type=reply.content_type or "application/json",
                    status=reply.status,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return error_response(web, 502, "owner unreachable", f"{owner}: {exc!r}")


def moving(web: Any, partition: int) -> Any:
    response = error_response(
        web,
        503,
        "partition moving",
        f"partition {partition} has no owner right now (rebalance in progress); retry shortly",
    )
    response.headers["Retry-After"] = _RETRY_AFTER
    return response
