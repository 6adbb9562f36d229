"""Asking a worker's web API again until it answers what a test waits for, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.helpers.worker import WorkerProcess


async def poll(
    fetch: Callable[[], Awaitable[tuple[int, Any]]],
    ready: Callable[[int, Any], bool],
    *,
    what: str,
    deadline_s: float = 60.0,
) -> Any:
    """Ask again until the answer is what we wait for; fail with the last answer."""
    deadline = time.monotonic() + deadline_s
    status, body = await fetch()
    while not ready(status, body):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last answer {status}: {body}")
        await asyncio.sleep(0.2)  # polling interval of the deadline loop
        status, body = await fetch()
    return body


def getter(
    session: aiohttp.ClientSession, worker: WorkerProcess, path: str
) -> Callable[[], Awaitable[tuple[int, Any]]]:
    async def fetch() -> tuple[int, Any]:
        async with session.get(f"http://127.0.0.1:{worker.web_port}{path}") as reply:
            return reply.status, await reply.json(content_type=None)

    return fetch


async def wait_ready(session: aiohttp.ClientSession, worker: WorkerProcess) -> None:
    await poll(
        getter(session, worker, "/ready"),
        lambda status, _: status == 200,
        what=f"worker on {worker.web_port} ready",
    )
