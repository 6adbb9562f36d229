from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from agents.delivery.backoff import (
    MAX_ERROR_LENGTH,
    MIN_DELAY,
    dead_letter_fields,
    next_attempt_at,
    record_error,
    retry_delay,
    should_dead_letter,
)

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6])
def test_delay_is_within_the_upper_half_of_the_doubling_exponential(attempt: int) -> None:
    rng = random.Random(attempt)
    exponential = 10.0 * 2 ** (attempt - 1)
    delays = [retry_delay(attempt, base=10.0, rng=rng) for _ in range(500)]
    assert min(delays) >= exponential / 2
    assert max(delays) <= exponential
    # Really jittered, over the whole interval, not a constant.
    assert max(delays) - min(delays) > exponential / 2 * 0.9


def test_delays_grow_with_the_attempt() -> None:
    rng = random.Random(7)
    means = [
        sum(retry_delay(attempt, base=10.0, rng=rng) for _ in range(200)) / 200
        for attempt in range(1, 7)
    ]
    assert means == sorted(means)
    assert means[-1] > 20 * means[0]


def test_delay_never_exceeds_the_cap_and_stays_jittered_there() -> None:
    rng = random.Random(1)
    delays = [retry_delay(attempt, base=10.0, cap=3600.0, rng=rng) for attempt in range(10, 60)]
    assert max(delays) <= 3600.0
    assert min(delays) >= 1800.0
    assert len(set(delays)) > 1


def test_a_huge_attempt_number_does_not_overflow() -> None:
    assert retry_delay(10_000, base=10.0, cap=60.0, rng=random.Random(0)) <= 60.0


def test_delay_never_goes_below_the_floor() -> None:
    rng = random.Random(3)
    assert all(retry_delay(1, base=0.01, rng=rng) >= MIN_DELAY for _ in range(100))
    assert retry_delay(1, base=0.0, rng=rng) == MIN_DELAY


def test_the_same_seed_gives_the_same_delays() -> None:
    first = [retry_delay(n, base=5.0, rng=random.Random(42)) for n in range(1, 6)]
    second = [retry_delay(n, base=5.0, rng=random.Random(42)) for n in range(1, 6)]
    assert first == second


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="attempt"):
        retry_delay(0, base=10.0)


def test_next_attempt_at_is_now_plus_the_delay() -> None:
    expected = NOW + timedelta(seconds=retry_delay(2, base=10.0, rng=random.Random(9)))
    assert next_attempt_at(NOW, 2, base=10.0, rng=random.Random(9)) == expected


def test_a_longer_retry_after_wins_even_beyond_the_cap() -> None:
    at = next_attempt_at(NOW, 1, base=10.0, retry_after=7200.0, rng=random.Random(0))
    assert at == NOW + timedelta(seconds=7200)


def test_a_shorter_retry_after_does_not_shorten_the_backoff() -> None:
    at = next_attempt_at(NOW, 3, base=10.0, retry_after=1.0, rng=random.Random(0))
    assert at >= NOW + timedelta(seconds=20)


def test_next_attempt_at_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone"):
        next_attempt_at(datetime(2025, 1, 1), 1, base=10.0)


@pytest.mark.parametrize(
    ("attempt", "max_attempts", "expected"),
    [(1, 5, False), (4, 5, False), (5, 5, True), (6, 5, True), (1, 1, True)],
)
def test_should_dead_letter_after_the_last_allowed_attempt(
    attempt: int, max_attempts: int, expected: bool
) -> None:
    assert should_dead_letter(attempt, max_attempts) is expected


def test_record_error_returns_a_new_list_and_leaves_the_old_one() -> None:
    first = record_error(
        None, attempt=1, at="2025-01-01T00:00:00Z", error="timeout", transient=True
    )
    second = record_error(
        first, attempt=2, at="2025-01-01T00:00:10Z", error="HTTP 503", transient=True
    )
    assert first == [
        {"attempt": 1, "at": "2025-01-01T00:00:00Z", "error": "timeout", "transient": True}
    ]
    assert [entry["attempt"] for entry in second] == [1, 2]
    assert second is not first


def test_record_error_keeps_the_latest_entries_and_cuts_long_messages() -> None:
    history = None
    for attempt in range(1, 8):
        history = record_error(
            history, attempt=attempt, at="t", error="x" * 5000, transient=True, max_entries=3
        )
    assert history is not None
    assert [entry["attempt"] for entry in history] == [5, 6, 7]
    assert all(len(entry["error"]) == MAX_ERROR_LENGTH for entry in history)


def test_dead_letter_fields_come_from_the_last_error() -> None:
    history = record_error(None, attempt=1, at="t1", error="timeout", transient=True)
    history = record_error(history, attempt=2, at="t2", error="HTTP 400", transient=False)
    assert dead_letter_fields(history) == {
        "error": "HTTP 400",
        "attempts": 2,
        "failed_at": "t2",
        "errors": history,
    }


def test_dead_letter_fields_need_an_error() -> None:
    with pytest.raises(ValueError, match="error"):
        dead_letter_fields([])
