"""How far ahead ``send_at`` and ``expires_at`` may point (``CLARION_MAX_HOLD``).

A held event is a row in the timers table until it comes due, so a ``send_at`` in year
9999 would be kept (and recovered on every rebalance) forever. The check needs the current
time, which the validators otherwise do without, so callers that have a clock pass one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from schemas.timestamps import parse_timestamp

DEFAULT_MAX_HOLD = 365 * 86400.0
HELD_FIELDS = ("send_at", "expires_at")
_DAY = 86400


@dataclass(frozen=True, slots=True)
class HoldHorizon:
    """``now`` and how many seconds past it an event may name."""

    now: datetime
    max_hold: float = DEFAULT_MAX_HOLD

    @property
    def latest(self) -> datetime:
        return self.now + timedelta(seconds=self.max_hold)


def check_hold_horizon(obj: dict[str, Any], horizon: HoldHorizon, problems: list[str]) -> None:
    """Call once the timestamps are known to be well formed."""
    latest = horizon.latest
    for name in HELD_FIELDS:
        value = obj.get(name)
        instant = parse_timestamp(value) if isinstance(value, str) else None
        if instant is not None and instant > latest:
            problems.append(
                f"field '{name}' ({value}) is more than {_span(horizon.max_hold)} ahead; "
                f"events may name at most {latest.isoformat(timespec='seconds')} "
                f"(CLARION_MAX_HOLD is {_number(horizon.max_hold)} seconds)"
            )


def _span(seconds: float) -> str:
    if seconds >= _DAY and seconds % _DAY == 0:
        days = int(seconds // _DAY)
        return f"{days} day{'s' if days != 1 else ''}"
    return f"{_number(seconds)} seconds"


def _number(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)
