"""Which offset of a partition may be committed while records finish out of order.

Records of one partition are started in the order they were fetched and may finish in any
order (several deliveries are in flight at once). The committable offset is the first record
still unfinished, or one past the last finished when none is in flight: committing it never
skips a record that has not finished, so a crash or a rebalance repeats only unfinished ones.

Offsets are compared in fetch order, never as ``offset + 1``: on a topic written inside
transactions, each commit marker takes an offset that no consumer ever sees, so the next
record fetched after offset 41 may well be 43.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field


@dataclass
class _Partition:
    # Offsets started and not yet popped, in fetch order; finished ones wait here until
    # every record fetched before them has finished too.
    started: deque[int] = field(default_factory=deque)
    finished: set[int] = field(default_factory=set)
    # One past the last record of the finished prefix; None before any record finished.
    done_up_to: int | None = None


class OffsetTracker:
    """Per partition (any hashable key, e.g. aiokafka's ``TopicPartition``): no I/O, no clock."""

    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}

    def start(self, tp: Hashable, offset: int) -> None:
        """A record is being processed; call in fetch order (increasing offsets)."""
        state = self._partitions.setdefault(tp, _Partition())
        # The next offset allowed: past the last one started, or past the finished prefix.
        floor = state.started[-1] + 1 if state.started else state.done_up_to
        if floor is not None and offset < floor:
            raise ValueError(
                f"offset {offset} of {tp} started out of fetch order (after {floor - 1})"
            )
        state.started.append(offset)

    def finish(self, tp: Hashable, offset: int) -> None:
        """The record is done (its outputs on the broker); unknown records are ignored, as
        are those of a partition forgotten since (a revoke that did not wait for them)."""
        state = self._partitions.get(tp)
        if state is None or offset not in state.started:
            return
        state.finished.add(offset)
        while state.started and state.started[0] in state.finished:
            done = state.started.popleft()
            state.finished.discard(done)
            state.done_up_to = done + 1

    def committable(self, tp: Hashable) -> int | None:
        """The offset to commit for ``tp`` (the next record to read); None if it has none."""
        state = self._partitions.get(tp)
        if state is None:
            return None
        if state.started:
            return state.started[0]
        return state.done_up_to

    def in_flight(self, tp: Hashable) -> int:
        state = self._partitions.get(tp)
        return 0 if state is None else len(state.started) - len(state.finished)

    def positions(self) -> dict[Hashable, int]:
        """Every partition's committable offset, for those that have one."""
        found = {tp: self.committable(tp) for tp in self._partitions}
        return {tp: offset for tp, offset in found.items() if offset is not None}

    def forget(self, tps: Iterable[Hashable]) -> None:
        """The partitions moved away: what is still in flight there no longer counts."""
        for tp in tps:
            self._partitions.pop(tp, None)
