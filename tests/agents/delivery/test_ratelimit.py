from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any

import pytest

from agents.delivery.ratelimit import TokenBucket


class VirtualTime:
    """A clock and a sleep that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._order), wake))
        await wake

    async def run(self, until: float | None = None) -> None:
        """Let tasks run, waking sleepers in deadline order (up to ``until``)."""
        await _settle()
        while self._sleepers and (until is None or self._sleepers[0][0] <= until):
            deadline, _, wake = heapq.heappop(self._sleepers)
            if wake.done():
                continue
            self.now = max(self.now, deadline)
            wake.set_result(None)
            await _settle()
        if until is not None:
            self.now = max(self.now, until)

    def bucket(self, rate: float | None, burst: int, **options: Any) -> TokenBucket:
        return TokenBucket(rate, burst, clock=self, sleep=self.sleep, **options)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def acquire_times(clock: VirtualTime, bucket: TokenBucket, count: int) -> list[float]:
    """Start ``count`` concurrent acquires and return when each was granted."""
    granted: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        granted.append(clock.now)

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await clock.run()
    await asyncio.gather(*tasks)
    return granted


async def test_burst_goes_at_once_then_the_steady_rate() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=10.0, burst=3)
    granted = await acquire_times(clock, bucket, 6)
    assert granted == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])


async def test_the_head_sleeps_exactly_until_the_next_token_without_polling() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=4.0, burst=1)
    await acquire_times(clock, bucket, 4)
    assert clock.sleeps == pytest.approx([0.25, 0.25, 0.25])


async def test_tokens_saved_while_idle_never_exceed_the_burst() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=10.0, burst=2)
    await acquire_times(clock, bucket, 2)
    clock.now = 100.0
    granted = await acquire_times(clock, bucket, 3)
    assert granted == pytest.approx([100.0, 100.0, 100.1])


async def test_unlimited_never_waits() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=None, burst=1)
    granted = await acquire_times(clock, bucket, 1000)
    assert set(granted) == {0.0}
    assert clock.sleeps == []
    assert bucket.try_acquire() == 0


async def test_try_acquire_takes_a_token_or_says_how_long_until_one() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=2.0, burst=1)
    assert bucket.try_acquire() == 0
    assert bucket.try_acquire() == pytest.approx(0.5)
    clock.now = 0.2
    assert bucket.try_acquire() == pytest.approx(0.3)
    clock.now = 0.5
    assert bucket.try_acquire() == 0


async def test_try_acquire_does_not_jump_the_queue() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=1.0, burst=1)
    assert bucket.try_acquire() == 0
    waiter = asyncio.create_task(bucket.acquire())
    await clock.run(until=0.0)
    assert bucket.waiting == 1
    # The waiter gets the token due at 1.0; the next one is due at 2.0.
    assert bucket.try_acquire() == pytest.approx(2.0)
    await clock.run()
    await waiter
    assert clock.now == pytest.approx(1.0)


async def test_waiters_are_served_in_arrival_order() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=10.0, burst=1)
    order: list[int] = []

    async def one(number: int) -> None:
        await bucket.acquire()
        order.append(number)

    tasks = []
    for number in range(8):
        tasks.append(asyncio.create_task(one(number)))
        await asyncio.sleep(0)  # each task queues before the next is created
    await clock.run()
    await asyncio.gather(*tasks)
    assert order == list(range(8))


async def test_a_new_caller_waits_behind_the_queue_even_when_a_token_is_due() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=10.0, burst=1)
    order: list[str] = []

    async def one(name: str) -> None:
        await bucket.acquire()
        order.append(name)

    first = asyncio.create_task(one("first"))
    queued = asyncio.create_task(one("queued"))
    await clock.run(until=0.0)
    assert order == ["first"]
    late = asyncio.create_task(one("late"))
    await clock.run()
    await asyncio.gather(first, queued, late)
    assert order == ["first", "queued", "late"]


async def test_a_waiter_cancelled_while_sleeping_leaves_its_token_to_the_next() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=1.0, burst=1)
    await bucket.acquire()
    head = asyncio.create_task(bucket.acquire())
    second = asyncio.create_task(bucket.acquire())
    await clock.run(until=0.5)
    head.cancel()
    await clock.run(until=1.0)
    assert second.done()
    assert head.cancelled()
    assert clock.now == pytest.approx(1.0)
    assert bucket.waiting == 0
    # Exactly one token was handed out at 1.0: the next is due a full interval later.
    assert bucket.try_acquire() == pytest.approx(1.0)


async def test_a_waiter_cancelled_in_the_queue_is_simply_skipped() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=1.0, burst=1)
    await bucket.acquire()
    granted: list[tuple[str, float]] = []

    async def one(name: str) -> None:
        await bucket.acquire()
        granted.append((name, clock.now))

    tasks = {name: asyncio.create_task(one(name)) for name in ("a", "b", "c")}
    await clock.run(until=0.0)
    tasks["b"].cancel()
    await clock.run()
    await asyncio.gather(tasks["a"], tasks["c"])
    assert [name for name, _ in granted] == ["a", "c"]
    assert [at for _, at in granted] == pytest.approx([1.0, 2.0])
    assert bucket.waiting == 0


async def test_a_waiter_cancelled_just_after_its_turn_came_passes_the_turn_on() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=1.0, burst=1)
    await bucket.acquire()
    tasks: dict[str, asyncio.Task[None]] = {}

    async def first_then_cancel_second() -> None:
        await bucket.acquire()
        # "second" has just been told it is the head, and has not run yet.
        tasks["second"].cancel()

    tasks["first"] = asyncio.create_task(first_then_cancel_second())
    await asyncio.sleep(0)
    tasks["second"] = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    tasks["third"] = asyncio.create_task(bucket.acquire())
    await clock.run()
    await asyncio.gather(tasks["first"], tasks["third"])
    assert tasks["second"].cancelled()
    assert clock.now == pytest.approx(2.0)
    assert bucket.waiting == 0


async def test_retry_after_pauses_every_token_until_it_passes() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=10.0, burst=5)
    bucket.slow_down(retry_after=30.0)
    assert bucket.try_acquire() == pytest.approx(30.0)
    granted = await acquire_times(clock, bucket, 3)
    # One request at the end of the pause, then the halved rate (5/s), not the saved burst.
    assert granted == pytest.approx([30.0, 30.2, 30.4])


async def test_retry_after_pauses_even_an_unlimited_bucket() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=None, burst=1)
    bucket.slow_down(retry_after=5.0)
    assert bucket.rate is None
    granted = await acquire_times(clock, bucket, 3)
    assert granted == pytest.approx([5.0, 5.0, 5.0])


async def test_a_429_while_a_waiter_sleeps_pushes_its_token_back() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=1.0, burst=1)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await clock.run(until=0.5)
    bucket.slow_down(retry_after=10.0)
    await clock.run()
    await waiter
    assert clock.now == pytest.approx(10.5)


async def test_429_halves_the_rate_down_to_the_floor() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=16.0, burst=1)
    rates = []
    for _ in range(6):
        bucket.slow_down(None)
        rates.append(bucket.rate)
        clock.now += 1.0
    assert rates == [8.0, 4.0, 2.0, 1.0, 1.0, 1.0]


async def test_a_burst_of_429s_from_requests_in_flight_halves_once() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=16.0, burst=4)
    for _ in range(4):
        bucket.slow_down(None)
    assert bucket.rate == 8.0


async def test_429_without_retry_after_drains_the_burst() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=10.0, burst=5)
    bucket.slow_down(None)
    assert bucket.try_acquire() == pytest.approx(0.2)


async def test_successes_bring_the_rate_back_additively_to_the_configured_one() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=16.0, burst=1, recovery_step=0.25, successes_per_step=3)
    bucket.slow_down(None)
    clock.now += 1.0
    bucket.slow_down(None)
    assert bucket.rate == 4.0
    rates = []
    for _ in range(4):
        for _ in range(3):
            bucket.on_success()
        rates.append(bucket.rate)
    assert rates == [8.0, 12.0, 16.0, 16.0]


async def test_a_429_restarts_the_success_streak() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=16.0, burst=1, recovery_step=0.25, successes_per_step=3)
    bucket.slow_down(None)
    bucket.on_success()
    bucket.on_success()
    bucket.slow_down(None)  # within the decrease interval: no halving, but the streak resets
    bucket.on_success()
    assert bucket.rate == 8.0
    bucket.on_success()
    bucket.on_success()
    assert bucket.rate == 12.0


async def test_tokens_earned_before_a_rate_change_are_kept() -> None:
    clock = VirtualTime()
    bucket = clock.bucket(rate=4.0, burst=1, successes_per_step=1, recovery_step=0.5)
    bucket.slow_down(None)  # 2/s, bucket drained at 0.0
    clock.now = 0.25  # half a token earned at 2/s
    bucket.on_success()  # back to 4/s: the other half takes 0.125 s
    assert bucket.try_acquire() == pytest.approx(0.125)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0.0, 1)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(1.0, 0)
