"""A token bucket per provider, slowed down by 429s and recovering additively (AIMD).

Waiters are served first come, first served: only the waiter at the head of the queue sleeps,
for exactly the time until the next token (no polling), and the others wait for their turn.
A token is taken only when a waiter proceeds, so a waiter cancelled at any point leaves the
bucket as if it had never asked.

Time comes from an injectable ``clock`` and ``sleep`` so tests run on a virtual clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

# Float arithmetic leaves 0.9999999 of a token after sleeping exactly the computed time;
# that must count as a whole token, or the head would sleep again for a nanosecond.
_EPSILON = 1e-9


class TokenBucket:
    """``rate`` tokens per second, up to ``burst`` saved; ``rate=None`` means unlimited.

    :meth:`slow_down` (a 429) halves the current rate, down to ``rate * min_rate_fraction``,
    and pauses until the provider's Retry-After. Every ``successes_per_step`` consecutive
    :meth:`on_success` calls add ``rate * recovery_step`` back, up to the configured rate.
    """

    def __init__(
        self,
        rate: float | None,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        min_rate_fraction: float = 1 / 16,
        recovery_step: float = 1 / 8,
        successes_per_step: int = 10,
        min_decrease_interval: float = 1.0,
    ) -> None:
        if rate is not None and not rate > 0:
            raise ValueError(f"rate must be positive or None (unlimited), not {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        if not 0 < min_rate_fraction <= 1 or not 0 < recovery_step <= 1:
            raise ValueError("min_rate_fraction and recovery_step must be in (0, 1]")
        if successes_per_step < 1:
            raise ValueError("successes_per_step must be at least 1")
        self._configured_rate = rate
        self._rate = rate
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._min_rate_fraction = min_rate_fraction
        self._recovery_step = recovery_step
        self._successes_per_step = successes_per_step
        self._min_decrease_interval = min_decrease_interval
        now = clock()
        self._tokens = float(burst)
        # When _tokens was counted. It lies in the future during a Retry-After pause, so that
        # no tokens accrue before the pause ends.
        self._counted_at = now
        self._paused_until = now
        self._successes = 0
        self._last_decrease_at = -math.inf
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def rate(self) -> float | None:
        """The current rate in tokens per second (None when unlimited)."""
        return self._rate

    @property
    def waiting(self) -> int:
        """How many callers are queued in :meth:`acquire`."""
        return len(self._waiters)

    async def acquire(self) -> None:
        """Wait for a token, behind every caller already waiting."""
        if not self._waiters and self._take_or_wait(self._clock()) == 0:
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            if self._waiters[0] is not turn:
                await turn
            # The head re-checks after each sleep: a 429 may have moved the next token later.
            while (wait := self._take_or_wait(self._clock())) > 0:
                await self._sleep(wait)
        finally:
            # Also reached on cancellation, from any place in the queue.
            self._waiters.remove(turn)
            if self._waiters and not self._waiters[0].done():
                self._waiters[0].set_result(None)

    def try_acquire(self) -> float:
        """0 when a token was taken now, else the estimated seconds until one would be.

        Never jumps the queue: with callers waiting, the estimate counts their tokens first.
        """
        now = self._clock()
        if not self._waiters:
            return self._take_or_wait(now)
        return self._seconds_until(len(self._waiters) + 1, now)

    def slow_down(self, retry_after: float | None = None) -> None:
        """The provider answered 429: halve the rate and pause until ``retry_after`` seconds."""
        now = self._clock()
        self._successes = 0
        self._settle(now)
        # Requests in flight together all come back 429; one burst of them is one signal,
        # not a reason to divide the rate by 2**n.
        if (
            self._rate is not None
            and self._configured_rate is not None
            and now - self._last_decrease_at >= self._min_decrease_interval
        ):
            floor = self._configured_rate * self._min_rate_fraction
            self._rate = max(floor, self._rate / 2)
            self._last_decrease_at = now
        if retry_after is not None and retry_after > 0:
            self._paused_until = max(self._paused_until, now + retry_after)
        if self._paused_until > now:
            # One request may go when the pause ends, then the new rate; the saved burst would
            # hit the limit again at once.
            self._tokens, self._counted_at = 1.0, self._paused_until
        else:
            self._tokens, self._counted_at = 0.0, now

    def on_success(self) -> None:
        """A request went through: count towards recovering the configured rate."""
        if self._rate is None or self._configured_rate is None:
            return
        if self._rate >= self._configured_rate:
            return
        self._successes += 1
        if self._successes < self._successes_per_step:
            return
        self._successes = 0
        self._settle(self._clock())
        step = self._configured_rate * self._recovery_step
        self._rate = min(self._configured_rate, self._rate + step)

    def _tokens_at(self, moment: float) -> float:
        if self._rate is None:
            return math.inf
        elapsed = max(0.0, moment - self._counted_at)
        return min(float(self._burst), self._tokens + elapsed * self._rate)

    def _settle(self, now: float) -> None:
        """Count the tokens earned so far at the current rate, before the rate changes."""
        if now > self._counted_at:
            self._tokens = self._tokens_at(now)
            self._counted_at = now

    def _seconds_until(self, tokens: int, now: float) -> float:
        """Seconds from ``now`` until ``tokens`` tokens will have been available."""
        start = max(now, self._paused_until)
        if self._rate is None:
            return start - now
        missing = tokens - self._tokens_at(start)
        if missing <= _EPSILON:
            return start - now
        # Tokens beyond the burst are handed out as they arrive, so the cap does not apply.
        return start - now + missing / self._rate

    def _take_or_wait(self, now: float) -> float:
        """Take a token and return 0, or return the seconds until the next one."""
        wait = self._seconds_until(1, now)
        if wait > 0:
            return wait
        if self._rate is not None:
            self._tokens = max(0.0, self._tokens_at(now) - 1)
            self._counted_at = max(now, self._counted_at)
        return 0.0
