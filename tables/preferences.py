"""The preferences table and the quiet-hours view derived from it.

One table, keyed by user_id and co-partitioned with the events topic, holds each user's
:class:`UserPreferences`; the quiet-hours view is a projection of it rather than a second
table, so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import time

from schemas.records import UserPreferences


@dataclass(frozen=True, slots=True)
class QuietHoursView:
    user_id: str
    timezone: str
    start: time
    end: time

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


def quiet_hours_of(preferences: UserPreferences | None) -> QuietHoursView | None:
    if preferences is None or preferences.quiet_hours is None:
        return None
    quiet = preferences.quiet_hours
    return QuietHoursView(
        user_id=preferences.user_id,
        timezone=preferences.timezone or "UTC",
        start=time.fromisoformat(quiet.start),
        end=time.fromisoformat(quiet.end),
    )
