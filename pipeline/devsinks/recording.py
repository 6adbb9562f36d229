"""What every fake remembers (requests, messages) and the faults it has been told to play."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl

from multidict import CIMultiDict, CIMultiDictProxy

T = TypeVar("T")


async def delay_unless(stop: asyncio.Event, seconds: float) -> None:
    """Wait ``seconds``, or less once ``stop`` is set (so teardown never waits a delay out).

    Not ``asyncio.wait_for``: on 3.11 it can swallow a cancellation that races with the
    event, and a handler whose client hung up must stay cancelled.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()


class Recorder(Generic[T]):
    """An append-only list that tests can await ("until 2 items arrived"), without sleeps."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._arrived = asyncio.Event()

    def append(self, item: T) -> None:
        self.items.append(item)
        # Wake every current waiter, then arm a fresh event for the next arrival.
        arrived, self._arrived = self._arrived, asyncio.Event()
        arrived.set()

    def clear(self) -> None:
        self.items.clear()

    def __len__(self) -> int:
        return len(self.items)

    async def wait_for(self, count: int, *, within: float = 5.0) -> list[T]:
        """The first ``count`` items once there are that many; ``TimeoutError`` after
        ``within`` seconds otherwise."""
        try:
            async with asyncio.timeout(within):
                while len(self.items) < count:
                    await self._arrived.wait()
        except TimeoutError:
            raise TimeoutError(
                f"expected {count} item(s) within {within:g}s, got {len(self.items)}"
            ) from None
        return self.items[:count]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    query: Mapping[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes
    received_at: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.text, keep_blank_values=True))

    def to_json(self) -> dict[str, Any]:
        """For ``GET /_control/requests``: the body as text, or base64 if it is not UTF-8."""
        try:
            body: dict[str, str] = {"text": self.body.decode("utf-8")}
        except UnicodeDecodeError:
            body = {"base64": base64.b64encode(self.body).decode()}
        return {
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "headers": dict(self.headers.items()),
            "body": body,
            "received_at": self.received_at,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RecordedRequest:
        """The inverse of :meth:`to_json`, for tests reading a fake over HTTP."""
        body = document["body"]
        try:
            raw = body["text"].encode() if "text" in body else base64.b64decode(body["base64"])
        except (KeyError, binascii.Error) as exc:
            raise ValueError(f"malformed recorded body: {body!r}") from exc
        return cls(
            method=document["method"],
            path=document["path"],
            query=dict(document["query"]),
            headers=CIMultiDictProxy(CIMultiDict(document["headers"])),
            body=raw,
            received_at=float(document["received_at"]),
        )


@dataclass(frozen=True, slots=True)
class Fault:
    """How a fake HTTP provider misbehaves for one request.

    ``delay`` is applied first (a slow answer, to trip client timeouts); then
    ``refuse`` drops the connection, or ``status`` answers with that error (and
    ``Retry-After: retry_after`` when given). A delay alone ends in a normal answer.
    """

    status: int | None = None
    delay: float = 0.0
    refuse: bool = False
    retry_after: str | None = None

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Fault:
        status = document.get("status")
        retry_after = document.get("retry_after")
        fault = cls(
            status=None if status is None else int(status),
            delay=float(document.get("delay", 0.0)),
            refuse=bool(document.get("refuse", False)),
            retry_after=None if retry_after is None else str(retry_after),
        )
        if fault.status is None and not fault.refuse and fault.delay <= 0:
            raise ValueError("a fault needs a status, a delay or refuse")
        return fault


class FaultQueue(Generic[T]):
    """Faults for the next N requests (or messages), consumed one per request in order."""

    def __init__(self) -> None:
        self._pending: deque[T] = deque()

    def add(self, fault: T, count: int = 1) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self._pending.extend([fault] * count)

    def peek(self) -> T | None:
        return self._pending[0] if self._pending else None

    def take(self) -> T | None:
        return self._pending.popleft() if self._pending else None

    def clear(self) -> None:
        self._pending.clear()

    def __len__(self) -> int:
        return len(self._pending)
