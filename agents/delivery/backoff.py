"""When to retry a failed delivery, when to give up, and the error trail for the DLQ.

``attempt`` is always the number of the attempt that just failed, starting at 1 like
``Delivery.attempt``: the first retry waits about ``base`` (``CLARION_RETRY_BACKOFF``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypedDict

DEFAULT_CAP = 3600.0
# However small ``base`` is configured, a retry never comes back within the same second: a
# provider that just failed gets a moment, and a retry storm stays impossible.
MIN_DELAY = 1.0
# The DLQ record carries the trail; a long one would make it too big for the topic.
MAX_ERROR_ENTRIES = 20
MAX_ERROR_LENGTH = 1000

# One generator for the process when the caller brings none. Jitter only spreads retries in
# time; it protects nothing, so a cryptographic generator would buy nothing.
_RNG = random.Random()  # noqa: S311


def retry_delay(
    attempt: int,
    *,
    base: float,
    cap: float = DEFAULT_CAP,
    rng: random.Random | None = None,
    floor: float = MIN_DELAY,
) -> float:
    """Seconds to wait after failed attempt ``attempt``: ``base * 2**(attempt-1)``, jittered.

    Equal jitter: a uniform pick in [d/2, d] of the capped exponential d. Unlike full jitter
    ([0, d]) the lower bound still doubles, so a provider that is down is not retried seconds
    after a failure, and the contract's "doubles per attempt" stays true of every retry; the
    upper half still spreads a burst of failures apart. Jittering below the cap too keeps
    long-failing deliveries from retrying in lockstep once they all reach it.
    ``cap`` wins over ``floor`` if it is set below it.
    """
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, not {attempt!r}")
    if base < 0 or cap < 0:
        raise ValueError("base and cap must not be negative")
    # 2.0**1000 is still a float; a larger exponent would overflow, and the cap is long hit.
    exponential = min(cap, base * 2.0 ** min(attempt - 1, 1000))
    jittered = (rng or _RNG).uniform(exponential / 2, exponential)
    return min(cap, max(floor, jittered))


def next_attempt_at(
    now: datetime,
    attempt: int,
    *,
    base: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
    cap: float = DEFAULT_CAP,
) -> datetime:
    """When to try again after failed attempt ``attempt`` (a ``Delivery.not_before``).

    The provider's Retry-After wins when longer, even beyond ``cap``: retrying earlier would
    only earn another refusal.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    delay = retry_delay(attempt, base=base, cap=cap, rng=rng)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return now + timedelta(seconds=delay)


def should_dead_letter(attempt: int, max_attempts: int) -> bool:
    """Whether failed attempt ``attempt`` was the last one ``CLARION_MAX_ATTEMPTS`` allows."""
    return attempt >= max_attempts


class ErrorEntry(TypedDict):
    attempt: int
    at: str
    error: str
    transient: bool


ErrorHistory = list[ErrorEntry]


def record_error(
    history: Sequence[ErrorEntry] | None,
    *,
    attempt: int,
    at: str,
    error: str,
    transient: bool,
    max_entries: int = MAX_ERROR_ENTRIES,
) -> ErrorHistory:
    """A new history with this failure last; the given one is left untouched.

    The oldest entries go first beyond ``max_entries``: the latest failures explain a
    dead letter best. Over-long messages (a provider's HTML error page) are cut.
    """
    if len(error) > MAX_ERROR_LENGTH:
        error = error[: MAX_ERROR_LENGTH - 1] + "…"
    entry: ErrorEntry = {"attempt": attempt, "at": at, "error": error, "transient": transient}
    kept = list(history or ())[-(max_entries - 1) :] if max_entries > 1 else []
    return [*kept, entry]


class DeadLetterFields(TypedDict):
    error: str
    attempts: int
    failed_at: str
    errors: ErrorHistory


def dead_letter_fields(history: Sequence[ErrorEntry]) -> DeadLetterFields:
    """What the DLQ record adds to the Delivery: the last error, attempts and when it failed.

    ``errors`` carries the whole trail, an addition schemas/jsonschema/delivery.json allows
    (consumers must ignore fields they do not know).
    """
    if not history:
        raise ValueError("a dead letter needs at least one recorded error")
    last = history[-1]
    return {
        "error": last["error"],
        "attempts": last["attempt"],
        "failed_at": last["at"],
        "errors": list(history),
    }
