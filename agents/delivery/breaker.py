"""A circuit breaker per provider, so a provider that is down is not hammered.

closed --N consecutive failures--> open --cool-down--> half_open --probe succeeds--> closed
                                    ^                      |
                                    +---probe fails--------+  (cool-down doubles, capped)

The caller decides what counts: only transient failures (timeouts, 5xx, 429) should be
recorded, since a rejected address says nothing about the provider's health.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        cooldown: float = 30.0,
        max_cooldown: float = 600.0,
        cooldown_factor: float = 2.0,
        probe_timeout: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, not {failure_threshold!r}")
        if cooldown <= 0 or max_cooldown < cooldown or cooldown_factor < 1:
            raise ValueError("need 0 < cooldown <= max_cooldown and cooldown_factor >= 1")
        if probe_timeout <= 0:
            raise ValueError("probe_timeout must be positive")
        self._failure_threshold = failure_threshold
        self._base_cooldown = cooldown
        self._max_cooldown = max_cooldown
        self._cooldown_factor = cooldown_factor
        self._probe_timeout = probe_timeout
        self._clock = clock
        self._failures = 0
        self._cooldown = cooldown
        self._open = False
        self._open_until = 0.0
        # When the half-open probe was let through, or None when no probe is in flight.
        self._probe_started: float | None = None

    @property
    def state(self) -> BreakerState:
        if not self._open:
            return "closed"
        return "open" if self._clock() < self._open_until else "half_open"

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """Whether a request may go now; in half-open, True for one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "open":
            return False
        now = self._clock()
        if self._probe_in_flight(now):
            return False
        self._probe_started = now
        return True

    def record_success(self) -> None:
        state = self.state
        if state == "closed":
            self._failures = 0
        elif state == "half_open" and self._probe_started is not None:
            self._close()
        # While open, a success can only come from a request let through before the breaker
        # opened; the probe, not a straggler, decides when the provider is back.

    def record_failure(self) -> None:
        state = self.state
        if state == "closed":
            self._failures += 1
            if self._failures >= self._failure_threshold:
                self._trip(self._base_cooldown)
        elif state == "half_open" and self._probe_started is not None:
            self._trip(min(self._max_cooldown, self._cooldown * self._cooldown_factor))
        # A straggler failing while open is the outage already being waited out.

    def retry_in(self) -> float:
        """Seconds until :meth:`allow` may return True again (0 when it may now)."""
        now = self._clock()
        state = self.state
        if state == "closed":
            return 0.0
        if state == "open":
            return self._open_until - now
        if self._probe_started is not None and self._probe_in_flight(now):
            return self._probe_started + self._probe_timeout - now
        return 0.0

    def _probe_in_flight(self, now: float) -> bool:
        # A probe whose outcome is never recorded (its task was cancelled, its worker lost
        # the partition) must not hold the breaker half-open forever.
        return self._probe_started is not None and now < self._probe_started + self._probe_timeout

    def _trip(self, cooldown: float) -> None:
        self._open = True
        self._cooldown = cooldown
        self._open_until = self._clock() + cooldown
        self._probe_started = None
        self._failures = 0

    def _close(self) -> None:
        self._open = False
        self._cooldown = self._base_cooldown
        self._probe_started = None
        self._failures = 0
