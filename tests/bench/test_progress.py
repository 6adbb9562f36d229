"""The quarter rates the route and pipeline benches print (bench/progress.py): pure arithmetic."""

from __future__ import annotations

import pytest

from bench.progress import Quarters, from_arrivals, from_samples, quarters_line


def test_arrivals_at_a_steady_pace_give_equal_quarters() -> None:
    quarters = from_arrivals([n * 0.01 for n in range(400)])  # 100 per second

    assert quarters.first == pytest.approx(100)
    assert quarters.last == pytest.approx(100)
    assert quarters.steady


def test_arrivals_slowing_down_show_in_the_last_quarter() -> None:
    # 100 items at 100/s, then 300 more at 50/s: the last quarter (100 items) is all slow.
    fast = [n * 0.01 for n in range(100)]
    slow = [fast[-1] + (n + 1) * 0.02 for n in range(300)]

    quarters = from_arrivals(fast + slow)

    assert quarters.first == pytest.approx(100, rel=0.02)
    assert quarters.last == pytest.approx(50, rel=0.02)
    assert not quarters.steady


def test_too_few_arrivals_have_no_quarters() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        from_arrivals([0.0, 1.0, 2.0])


def test_samples_are_interpolated_between_the_steps_a_poller_saw() -> None:
    # A counter polled once a second, moving 100 per second from 50 at t=10 to 450 at t=14;
    # seen only at t=10, 12 and 14 (nothing changed at the other polls).
    quarters = from_samples([(10.0, 50), (12.0, 250), (14.0, 450)])

    assert quarters.first == pytest.approx(100)
    assert quarters.last == pytest.approx(100)


def test_samples_of_a_counter_that_slows_down() -> None:
    # 0 -> 300 in 1 s, then 300 -> 400 in 4 s: the first quarter (100) took 1/3 s.
    quarters = from_samples([(0.0, 0), (1.0, 300), (5.0, 400)])

    assert quarters.first == pytest.approx(300)
    assert quarters.last == pytest.approx(25)
    assert not quarters.steady


def test_a_counter_that_never_moved_has_no_quarters() -> None:
    with pytest.raises(ValueError, match="did not move"):
        from_samples([(0.0, 10), (1.0, 10)])


@pytest.mark.parametrize(
    ("first", "last", "steady"),
    [(100.0, 80.0, True), (100.0, 79.0, False), (100.0, 150.0, True)],
)
def test_only_a_slower_last_quarter_counts_against_the_run(
    first: float, last: float, steady: bool
) -> None:
    assert Quarters(first=first, last=last).steady is steady


def test_the_printed_line_names_both_rates_and_the_verdict() -> None:
    line = quarters_line("emails accepted", "emails", lambda: Quarters(first=1000.0, last=700.0))

    assert line == (
        "emails accepted: first quarter 1,000 emails/s, last quarter 700 emails/s; "
        "last within 20% of first: no (last/first 0.70)"
    )
    assert quarters_line("x", "events", lambda: from_arrivals([])) == (
        "x: no quarter rates (quarter rates need at least 8 arrivals, not 0)"
    )
