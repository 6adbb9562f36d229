"""A bounded pool of open SMTP sessions, so a burst of email does not pay a handshake each.

Opening a session (TCP, greeting, EHLO, STARTTLS, AUTH) costs several round trips; a
session carries any number of messages. At most ``size`` sessions are open at once, callers
beyond that wait for one. A session is reused only after a send that succeeded; any failure
discards it, since its state after an error is not worth guessing. Idle sessions older than
``idle_timeout`` are closed instead of reused: relays hang up on idle clients after a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import aiosmtplib

Connect = Callable[[], Awaitable[aiosmtplib.SMTP]]


class SmtpSessionPool:
    def __init__(
        self,
        connect: Connect,
        *,
        size: int,
        idle_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be at least 1, not {size!r}")
        self._connect = connect
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._idle_timeout = idle_timeout
        self._clock = clock

    async def acquire(self) -> tuple[aiosmtplib.SMTP, bool]:
        """A session to send on, and whether it was used before (it may have gone stale)."""
        await self._slots.acquire()
        try:
            while self._idle:
                session, idle_since = self._idle.pop()
                if session.is_connected and self._clock() - idle_since < self._idle_timeout:
                    return session, True
                await _quit(session)
            return await self._connect(), False
        except BaseException:
            self._slots.release()
            raise

    async def release(self, session: aiosmtplib.SMTP, *, reusable: bool) -> None:
        try:
            if reusable and session.is_connected:
                self._idle.append((session, self._clock()))
            else:
                await _quit(session)
        finally:
            self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(session) for session, _ in idle))

    @property
    def idle_sessions(self) -> int:
        return len(self._idle)


async def _quit(session: aiosmtplib.SMTP) -> None:
    # Closing is a courtesy to the server; a session that cannot say goodbye is just dropped.
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        if session.is_connected:
            await session.quit()
    session.close()
