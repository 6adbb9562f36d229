"""Where a worker's notion of "now" comes from: the system clock, or a file tests control."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from schemas.timestamps import parse_timestamp

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Re-read at most this often: the clock is asked once per event.
_FILE_CLOCK_REFRESH = 0.02


def system_clock() -> datetime:
    return datetime.now(UTC)


class FileClock:
    """The instant written in a file (RFC 3339), re-read when it may have changed.

    Time stands still between writes, which is what a test moving through quiet hours wants.
    A file that cannot be read keeps the last instant read, or the system time before that.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._now: datetime | None = None
        self._read_at = float("-inf")

    def __call__(self) -> datetime:
        moment = time.monotonic()
        if moment - self._read_at >= _FILE_CLOCK_REFRESH:
            self._read_at = moment
            self._refresh()
        return self._now if self._now is not None else system_clock()

    def _refresh(self) -> None:
        try:
            text = self._path.read_text().strip()
        except OSError as exc:
            logger.warning("clock file %s unreadable (%s); keeping the last time", self._path, exc)
            return
        parsed = parse_timestamp(text)
        if parsed is None:
            logger.warning("clock file %s holds %r, not an RFC 3339 time", self._path, text)
            return
        self._now = parsed.astimezone(UTC)


def clock_for(clock_file: Path | None) -> Clock:
    return system_clock if clock_file is None else FileClock(clock_file)
