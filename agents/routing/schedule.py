"""Pure time arithmetic for quiet hours and digest windows (contract, routing rules 4 and 5).

No I/O and no Faust: every function takes the current instant as an argument and returns aware
UTC datetimes, so the durable timers built on top can store and compare plain instants.

Local wall time is computed with :mod:`zoneinfo`. DST rules:

* Quiet hours are judged on the local wall clock. When the local ``end`` does not exist that day
  (spring-forward gap) the hold is released at the first instant after the gap; when it occurs
  twice (fall-back fold) it is released at the first occurrence (``fold=0``), and the repeated
  wall-clock hour after that release is outside quiet hours.
* Digest windows are wall-clock buckets of ``window_seconds`` counted from local midnight, cut at
  every UTC-offset change. A window is therefore never longer than ``window_seconds``: on a
  spring-forward day the bucket holding the gap is shorter (hourly windows simply skip the missing
  hour, none is 0 s long), and on a fall-back day the bucket holding the fold is split at the
  transition into two windows (hourly: each pass of the repeated hour is its own 1 h window).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tables.preferences import QuietHoursView

_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)


def quiet_until(now: datetime, quiet: QuietHoursView) -> datetime | None:
    """The UTC instant the user's quiet hours end, or None when ``now`` is outside them.

    ``start`` is inside and ``end`` is outside the window. ``start == end`` is an empty window
    (never quiet) rather than a 24-hour one, which would hold notifications forever.
    """
    _require_aware(now)
    if quiet.start == quiet.end:
        return None
    zone = ZoneInfo(quiet.timezone)
    local = now.astimezone(zone)
    wall = local.time()
    end_day: date = local.date()
    if quiet.crosses_midnight:
        if wall >= quiet.start:
            end_day += _DAY
        elif wall >= quiet.end:
            return None
    elif not quiet.start <= wall < quiet.end:
        return None
    release = _resolve_wall(datetime.combine(end_day, quiet.end), zone)
    # Only on a fall-back day: the second pass of the repeated hour, after the release.
    return release if release > now else None


def digest_window(now: datetime, timezone: str, window_seconds: float) -> tuple[datetime, datetime]:
    """The UTC ``[start, end)`` of the digest window holding ``now``.

    Windows are multiples of ``window_seconds`` since local midnight on the wall clock (so whole
    hours dividing 24 h align to local hour boundaries: a +05:30 zone's start at :30 UTC). When
    ``window_seconds`` does not divide the day, the last window of the day ends at local midnight.
    Each window is also cut at UTC-offset changes (see the module docstring).
    """
    _require_aware(now)
    width = timedelta(seconds=window_seconds)
    if not _MICROSECOND <= width <= _DAY:
        raise ValueError(f"digest window must be between 1 µs and 24 h, got {window_seconds!r} s")
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    offset = _offset(local, zone)
    wall = local.replace(tzinfo=None, fold=0)
    midnight = datetime.combine(wall.date(), time())
    start_wall = midnight + width * ((wall - midnight) // width)
    end_wall = min(start_wall + width, midnight + _DAY)

    start = (start_wall - offset).replace(tzinfo=UTC)
    end = (end_wall - offset).replace(tzinfo=UTC)
    utc_now = now.astimezone(UTC)
    if _offset(start, zone) != offset:
        start = _first_instant(start, utc_now, lambda at: _offset(at, zone) == offset)
    if _offset(end - _MICROSECOND, zone) != offset:
        end = _first_instant(utc_now, end - _MICROSECOND, lambda at: _offset(at, zone) != offset)
    return start, end


def _require_aware(now: datetime) -> None:
    if now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")


def _offset(at: datetime, zone: ZoneInfo) -> timedelta:
    offset = at.astimezone(zone).utcoffset()
    assert offset is not None  # zoneinfo always yields an offset for aware input
    return offset


def _resolve_wall(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a naive local wall time: first occurrence, or the end of its gap."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap, fold=0 applies the offset before the transition and fold=1 the one after, so
    # the transition lies in (after_offset_instant, first]; find it.
    earlier = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = min(earlier, first), max(earlier, first)
    after = _offset(hi, zone)
    return _first_instant(lo, hi, lambda at: _offset(at, zone) == after)


def _first_instant(lo: datetime, hi: datetime, holds: Callable[[datetime], bool]) -> datetime:
    """The earliest instant in ``(lo, hi]`` where ``holds`` is true, ``holds`` being monotone."""
    low, high = 0, (hi - lo) // _MICROSECOND
    while high - low > 1:
        middle = (low + high) // 2
        if holds(lo + middle * _MICROSECOND):
            high = middle
        else:
            low = middle
    return lo + high * _MICROSECOND
