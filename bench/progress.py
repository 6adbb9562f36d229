"""First-quarter and last-quarter rates of a run: does the cost per event grow with the work?

A run's items (events committed, emails accepted) arrive over time. If each one cost the
same however many came before it, the last quarter of them would arrive as fast as the first
quarter; a last quarter much slower than the first shows a cost that grows with the work
(a table, an index or a backlog getting bigger). Pure arithmetic, no I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# How much slower the last quarter may be than the first (issue 11: "within 20 %").
TOLERANCE = 0.2


@dataclass(frozen=True, slots=True)
class Quarters:
    """Items per second over the first and over the last quarter of a run's items."""

    first: float
    last: float

    @property
    def steady(self) -> bool:
        """Only a slower last quarter counts against the run: a faster one (a first quarter
        that also paid for warming up) is no cost growing with the work."""
        return self.last >= (1 - TOLERANCE) * self.first

    def describe(self, unit: str) -> str:
        ratio = self.last / self.first if self.first > 0 else float("nan")
        return (
            f"first quarter {self.first:,.0f} {unit}/s, last quarter {self.last:,.0f} {unit}/s; "
            f"last within {TOLERANCE:.0%} of first: {'yes' if self.steady else 'no'} "
            f"(last/first {ratio:.2f})"
        )


def from_arrivals(times: Sequence[float]) -> Quarters:
    """``times``: when each item arrived, in increasing order (at least 8 of them)."""
    count = len(times)
    if count < 8:
        raise ValueError(f"quarter rates need at least 8 arrivals, not {count}")
    quarter = count // 4
    # Items after the first one of each span, over the span: the first one starts the clock.
    first = quarter / (times[quarter] - times[0])
    last = quarter / (times[-1] - times[-1 - quarter])
    return Quarters(first=first, last=last)


def from_samples(samples: Sequence[tuple[float, int]]) -> Quarters:
    """``samples``: (time, items done so far), both increasing, as a poller sees a counter.

    The counter moves in steps (a batch committed at once), so the moment it crossed a
    quarter is interpolated between the two samples around it.
    """
    if len(samples) < 2:
        raise ValueError("quarter rates need at least 2 samples")
    start_at, start = samples[0]
    end_at, end = samples[-1]
    quarter = (end - start) / 4
    if quarter <= 0:
        raise ValueError("the counter did not move between the first and the last sample")
    first_end = _crossing(samples, start + quarter)
    last_start = _crossing(samples, end - quarter)
    return Quarters(first=quarter / (first_end - start_at), last=quarter / (end_at - last_start))


def _crossing(samples: Sequence[tuple[float, int]], level: float) -> float:
    """When the counter reached ``level``, linearly between the samples around it."""
    counts = [done for _, done in samples]
    after = bisect.bisect_left(counts, level)
    at, done = samples[after]
    if after == 0 or done == level:
        return at
    before_at, before = samples[after - 1]
    return before_at + (at - before_at) * (level - before) / (done - before)


def quarters_line(label: str, unit: str, compute: Callable[[], Quarters]) -> str:
    """``label: first quarter …``, or why a run too small or too quick for quarters has none."""
    try:
        return f"{label}: {compute().describe(unit)}"
    except ValueError as exc:
        return f"{label}: no quarter rates ({exc})"
