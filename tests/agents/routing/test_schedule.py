"""Quiet-hours release instants and digest windows, including DST days, with no Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest

from agents.routing.schedule import digest_window, quiet_until
from tables.preferences import QuietHoursView

# Europe/Paris 2026: spring forward 2026-03-29 01:00 UTC (02:00 CET -> 03:00 CEST),
# fall back 2026-10-25 01:00 UTC (03:00 CEST -> 02:00 CET).
# America/New_York 2026: spring forward 2026-03-08 07:00 UTC (02:00 EST -> 03:00 EDT).


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def view(zone: str, start: str, end: str) -> QuietHoursView:
    return QuietHoursView(
        user_id="u-1", timezone=zone, start=time.fromisoformat(start), end=time.fromisoformat(end)
    )


QUIET_CASES = [
    # id, zone, start, end, now, expected release (None = outside)
    ("night-before-start", "UTC", "22:00", "07:00", utc(2026, 1, 10, 21, 59, 59), None),
    ("night-at-start", "UTC", "22:00", "07:00", utc(2026, 1, 10, 22), utc(2026, 1, 11, 7)),
    (
        "night-before-midnight",
        "UTC",
        "22:00",
        "07:00",
        utc(2026, 1, 10, 23, 59),
        utc(2026, 1, 11, 7),
    ),
    ("night-after-midnight", "UTC", "22:00", "07:00", utc(2026, 1, 11, 3), utc(2026, 1, 11, 7)),
    (
        "night-just-before-end",
        "UTC",
        "22:00",
        "07:00",
        utc(2026, 1, 11, 6, 59, 59),
        utc(2026, 1, 11, 7),
    ),
    ("night-at-end", "UTC", "22:00", "07:00", utc(2026, 1, 11, 7), None),
    ("night-midday", "UTC", "22:00", "07:00", utc(2026, 1, 11, 12), None),
    ("day-before-start", "UTC", "13:00", "14:00", utc(2026, 1, 10, 12, 59, 59), None),
    ("day-at-start", "UTC", "13:00", "14:00", utc(2026, 1, 10, 13), utc(2026, 1, 10, 14)),
    ("day-inside", "UTC", "13:00", "14:00", utc(2026, 1, 10, 13, 59, 59), utc(2026, 1, 10, 14)),
    ("day-at-end", "UTC", "13:00", "14:00", utc(2026, 1, 10, 14), None),
    ("day-late-evening", "UTC", "13:00", "14:00", utc(2026, 1, 10, 23), None),
    ("empty-window", "UTC", "08:00", "08:00", utc(2026, 1, 10, 8), None),
    (
        "now-in-other-offset",
        "UTC",
        "22:00",
        "07:00",
        datetime(2026, 1, 10, 23, tzinfo=timezone(timedelta(hours=-5))),  # 04:00 UTC
        utc(2026, 1, 11, 7),
    ),
    # Paris, spring forward: 02:30 does not exist on 2026-03-29, release when the gap ends.
    (
        "paris-gap-evening",
        "Europe/Paris",
        "22:00",
        "02:30",
        utc(2026, 3, 28, 21),
        utc(2026, 3, 29, 1),
    ),
    (
        "paris-gap-before",
        "Europe/Paris",
        "22:00",
        "02:30",
        utc(2026, 3, 29, 0, 30),
        utc(2026, 3, 29, 1),
    ),
    ("paris-gap-after", "Europe/Paris", "22:00", "02:30", utc(2026, 3, 29, 1), None),
    (
        "paris-gap-end-0200",
        "Europe/Paris",
        "22:00",
        "02:00",
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
    ),
    (
        "paris-gap-end-0300",
        "Europe/Paris",
        "22:00",
        "03:00",
        utc(2026, 3, 29, 0),
        utc(2026, 3, 29, 1),
    ),
    (
        "paris-gap-start-0230",
        "Europe/Paris",
        "02:30",
        "06:00",
        utc(2026, 3, 29, 1),
        utc(2026, 3, 29, 4),
    ),
    # Paris, fall back: 02:30 happens twice on 2026-10-25, release at the first (CEST) one.
    (
        "paris-fold-evening",
        "Europe/Paris",
        "22:00",
        "02:30",
        utc(2026, 10, 24, 20),
        utc(2026, 10, 25, 0, 30),
    ),
    (
        "paris-fold-first-pass",
        "Europe/Paris",
        "22:00",
        "02:30",
        utc(2026, 10, 25, 0, 15),
        utc(2026, 10, 25, 0, 30),
    ),
    ("paris-fold-second-pass", "Europe/Paris", "22:00", "02:30", utc(2026, 10, 25, 1, 15), None),
    ("paris-fold-after", "Europe/Paris", "22:00", "02:30", utc(2026, 10, 25, 1, 30), None),
    ("paris-summer", "Europe/Paris", "22:00", "07:00", utc(2026, 7, 1, 20), utc(2026, 7, 2, 5)),
    ("paris-winter", "Europe/Paris", "22:00", "07:00", utc(2026, 1, 1, 21), utc(2026, 1, 2, 6)),
    # Non-hour offset (+05:30).
    (
        "kolkata-inside",
        "Asia/Kolkata",
        "22:00",
        "07:00",
        utc(2026, 6, 1, 17),
        utc(2026, 6, 2, 1, 30),
    ),
    ("kolkata-before", "Asia/Kolkata", "22:00", "07:00", utc(2026, 6, 1, 16, 29, 59), None),
    ("kolkata-at-end", "Asia/Kolkata", "22:00", "07:00", utc(2026, 6, 2, 1, 30), None),
    ("kolkata-lunch", "Asia/Kolkata", "13:00", "14:00", utc(2026, 6, 1, 8), utc(2026, 6, 1, 8, 30)),
    # New York: standard time, daylight time, and quiet hours ending in the spring gap.
    ("ny-winter", "America/New_York", "22:00", "07:00", utc(2026, 1, 15, 3), utc(2026, 1, 15, 12)),
    ("ny-summer", "America/New_York", "22:00", "07:00", utc(2026, 7, 15, 2), utc(2026, 7, 15, 11)),
    ("ny-winter-outside", "America/New_York", "22:00", "07:00", utc(2026, 1, 15, 2, 59), None),
    ("ny-gap", "America/New_York", "23:00", "02:30", utc(2026, 3, 8, 5), utc(2026, 3, 8, 7)),
]


@pytest.mark.parametrize(
    ("zone", "start", "end", "now", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in QUIET_CASES],
)
def test_quiet_until(
    zone: str, start: str, end: str, now: datetime, expected: datetime | None
) -> None:
    released = quiet_until(now, view(zone, start, end))
    assert released == expected
    if released is not None:
        assert released.utcoffset() == timedelta(0)
        assert released > now


def test_quiet_until_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        quiet_until(datetime(2026, 1, 1, 12), view("UTC", "22:00", "07:00"))


HOUR = 3600.0
THREE_HOURS = 3 * HOUR

DIGEST_CASES = [
    # id, zone, window seconds, now, expected (start, end)
    (
        "utc-hourly",
        "UTC",
        HOUR,
        utc(2026, 1, 10, 12, 34, 56),
        (utc(2026, 1, 10, 12), utc(2026, 1, 10, 13)),
    ),
    (
        "utc-hourly-boundary",
        "UTC",
        HOUR,
        utc(2026, 1, 10, 13),
        (utc(2026, 1, 10, 13), utc(2026, 1, 10, 14)),
    ),
    (
        "utc-hourly-midnight",
        "UTC",
        HOUR,
        utc(2026, 1, 10, 23, 59, 59),
        (utc(2026, 1, 10, 23), utc(2026, 1, 11)),
    ),
    (
        "kolkata-hourly",
        "Asia/Kolkata",
        HOUR,
        utc(2026, 6, 1, 12, 10),
        (utc(2026, 6, 1, 11, 30), utc(2026, 6, 1, 12, 30)),
    ),
    (
        "kolkata-hourly-boundary",
        "Asia/Kolkata",
        HOUR,
        utc(2026, 6, 1, 12, 30),
        (utc(2026, 6, 1, 12, 30), utc(2026, 6, 1, 13, 30)),
    ),
    (
        "kolkata-3h",
        "Asia/Kolkata",
        THREE_HOURS,
        utc(2026, 6, 1, 12, 10),
        (utc(2026, 6, 1, 9, 30), utc(2026, 6, 1, 12, 30)),
    ),
    (
        "ny-hourly-winter",
        "America/New_York",
        HOUR,
        utc(2026, 1, 10, 15, 20),
        (utc(2026, 1, 10, 15), utc(2026, 1, 10, 16)),
    ),
    (
        "ny-3h-summer",
        "America/New_York",
        THREE_HOURS,
        utc(2026, 7, 10, 15, 20),
        (utc(2026, 7, 10, 13), utc(2026, 7, 10, 16)),
    ),
    (
        "utc-10s",
        "UTC",
        10.0,
        datetime(2026, 1, 10, 12, 0, 7, 500_000, tzinfo=UTC),
        (utc(2026, 1, 10, 12), utc(2026, 1, 10, 12, 0, 10)),
    ),
    (
        "utc-10s-boundary",
        "UTC",
        10.0,
        utc(2026, 1, 10, 12, 0, 10),
        (utc(2026, 1, 10, 12, 0, 10), utc(2026, 1, 10, 12, 0, 20)),
    ),
    (
        "kolkata-10s",
        "Asia/Kolkata",
        10.0,
        utc(2026, 6, 1, 12, 0, 7),
        (utc(2026, 6, 1, 12), utc(2026, 6, 1, 12, 0, 10)),
    ),
    (
        "ny-10s",
        "America/New_York",
        10.0,
        utc(2026, 1, 10, 15, 20, 59),
        (utc(2026, 1, 10, 15, 20, 50), utc(2026, 1, 10, 15, 21)),
    ),
    # 7 s does not divide the day: the last window stops at local midnight.
    (
        "utc-7s-day-end",
        "UTC",
        7.0,
        utc(2026, 1, 10, 23, 59, 55),
        (utc(2026, 1, 10, 23, 59, 54), utc(2026, 1, 11)),
    ),
    (
        "utc-7s-day-start",
        "UTC",
        7.0,
        utc(2026, 1, 11, 0, 0, 3),
        (utc(2026, 1, 11), utc(2026, 1, 11, 0, 0, 7)),
    ),
    ("utc-daily", "UTC", 24 * HOUR, utc(2026, 1, 10, 15), (utc(2026, 1, 10), utc(2026, 1, 11))),
    # Paris spring forward: hourly windows skip the missing 02:00 hour;
    # the 3 h window 00:00-03:00 lasts 2 h.
    (
        "paris-spring-hour-before",
        "Europe/Paris",
        HOUR,
        utc(2026, 3, 29, 0, 59, 59),
        (utc(2026, 3, 29, 0), utc(2026, 3, 29, 1)),
    ),
    (
        "paris-spring-hour-after",
        "Europe/Paris",
        HOUR,
        utc(2026, 3, 29, 1),
        (utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)),
    ),
    (
        "paris-spring-3h-before",
        "Europe/Paris",
        THREE_HOURS,
        utc(2026, 3, 29, 0, 30),
        (utc(2026, 3, 28, 23), utc(2026, 3, 29, 1)),
    ),
    (
        "paris-spring-3h-after",
        "Europe/Paris",
        THREE_HOURS,
        utc(2026, 3, 29, 1, 30),
        (utc(2026, 3, 29, 1), utc(2026, 3, 29, 4)),
    ),
    (
        "paris-spring-10s",
        "Europe/Paris",
        10.0,
        utc(2026, 3, 29, 1, 0, 3),
        (utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 0, 10)),
    ),
    (
        "paris-spring-daily",
        "Europe/Paris",
        24 * HOUR,
        utc(2026, 3, 29, 12),
        (utc(2026, 3, 29, 1), utc(2026, 3, 29, 22)),
    ),
    # Paris fall back: each pass of the repeated 02:00 hour is its own window;
    # the 3 h window 00:00-03:00 is split at the transition.
    (
        "paris-fall-hour-first",
        "Europe/Paris",
        HOUR,
        utc(2026, 10, 25, 0, 15),
        (utc(2026, 10, 25, 0), utc(2026, 10, 25, 1)),
    ),
    (
        "paris-fall-hour-second",
        "Europe/Paris",
        HOUR,
        utc(2026, 10, 25, 1, 15),
        (utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)),
    ),
    (
        "paris-fall-hour-after",
        "Europe/Paris",
        HOUR,
        utc(2026, 10, 25, 2),
        (utc(2026, 10, 25, 2), utc(2026, 10, 25, 3)),
    ),
    (
        "paris-fall-3h-first",
        "Europe/Paris",
        THREE_HOURS,
        utc(2026, 10, 25, 0, 30),
        (utc(2026, 10, 24, 22), utc(2026, 10, 25, 1)),
    ),
    (
        "paris-fall-3h-second",
        "Europe/Paris",
        THREE_HOURS,
        utc(2026, 10, 25, 1, 30),
        (utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)),
    ),
    (
        "paris-fall-3h-after",
        "Europe/Paris",
        THREE_HOURS,
        utc(2026, 10, 25, 2, 30),
        (utc(2026, 10, 25, 2), utc(2026, 10, 25, 5)),
    ),
    (
        "paris-fall-10s-first",
        "Europe/Paris",
        10.0,
        utc(2026, 10, 25, 0, 59, 55),
        (utc(2026, 10, 25, 0, 59, 50), utc(2026, 10, 25, 1)),
    ),
    (
        "paris-fall-10s-second",
        "Europe/Paris",
        10.0,
        utc(2026, 10, 25, 1, 0, 5),
        (utc(2026, 10, 25, 1), utc(2026, 10, 25, 1, 0, 10)),
    ),
]


@pytest.mark.parametrize(
    ("zone", "window_seconds", "now", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in DIGEST_CASES],
)
def test_digest_window(
    zone: str, window_seconds: float, now: datetime, expected: tuple[datetime, datetime]
) -> None:
    start, end = digest_window(now, zone, window_seconds)
    assert (start, end) == expected
    assert start <= now < end
    assert end - start <= timedelta(seconds=window_seconds)
    assert start.utcoffset() == end.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("zone", "window_seconds", "day"),
    [
        ("Europe/Paris", HOUR, utc(2026, 3, 28, 12)),
        ("Europe/Paris", THREE_HOURS, utc(2026, 10, 24, 12)),
        ("Europe/Paris", 10.0, utc(2026, 10, 25, 0, 50)),
        ("America/New_York", THREE_HOURS, utc(2026, 3, 7, 12)),
        ("Asia/Kolkata", 7.0, utc(2026, 6, 1, 18, 20)),
    ],
)
def test_digest_windows_tile_time(zone: str, window_seconds: float, day: datetime) -> None:
    """Consecutive windows meet end to start: no gap, no overlap, across the DST change."""
    now = day
    start, end = digest_window(now, zone, window_seconds)
    for _ in range(40):
        next_start, next_end = digest_window(end, zone, window_seconds)
        assert next_start == end
        assert digest_window(end - timedelta(microseconds=1), zone, window_seconds) == (start, end)
        start, end = next_start, next_end


@pytest.mark.parametrize("window_seconds", [0.0, -1.0, 2 * 24 * HOUR])
def test_digest_window_rejects_bad_width(window_seconds: float) -> None:
    with pytest.raises(ValueError, match="digest window"):
        digest_window(utc(2026, 1, 1), "UTC", window_seconds)
