"""The faults bench's figures, computed from what it observed (no I/O: tested without Kafka).

Two kinds of *lanes* show progress, each a partition:

* ``email`` partition *p*: the SMTP sink accepting an email whose Delivery is on partition
  *p* of the email topic (the delivery runtime serving *p*);
* ``events`` partition *p*: a Delivery, on any channel topic, committed for an event of
  partition *p* of the events topic (the route runtime serving *p*).

After a change (a kill, a restart, a stop, a join) at time *t*, a lane is *served again* at
its first progress at or after *t*; its *longest gap* is the longest time without progress
that starts in the change's window (from *t*, or from a progress in the window, to the next
progress): it also catches the pause of a rebalance that comes seconds after the change.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bench.observed import Committed

Lane = tuple[str, int]  # ("email" or "events", partition)
KINDS = ("email", "events")


def every_lane(partitions: int) -> list[Lane]:
    return [(kind, partition) for kind in KINDS for partition in range(partitions)]


def progress(
    records: Iterable[Committed],
    partition_of: Mapping[str, int],
    accepted: Mapping[str, Sequence[float]],
    email_topic: str,
) -> dict[Lane, list[float]]:
    """Every progress time of every lane, sorted."""
    lanes: defaultdict[Lane, list[float]] = defaultdict(list)
    email_partition: dict[str, int] = {}
    for record in records:
        if record.topic == email_topic:
            email_partition[record.notification_id] = record.partition
        partition = partition_of.get(record.event_id)
        if partition is not None:
            lanes[("events", partition)].append(record.at)
    for notification, times in accepted.items():
        partition = email_partition.get(notification)
        if partition is not None:
            lanes[("email", partition)].extend(times)
    return {lane: sorted(times) for lane, times in lanes.items()}


def served_again(times: Sequence[float], since: float) -> float | None:
    """Seconds from ``since`` to the lane's first progress at or after it; None if never."""
    index = bisect.bisect_left(times, since)
    return times[index] - since if index < len(times) else None


def longest_gap(times: Sequence[float], start: float, end: float) -> float | None:
    """The longest time without progress after ``start``: from ``start`` to the first
    progress, or from a progress before ``end`` to the next one, cut at ``end`` (a pause that
    starts before the next change and goes on past it is that change's); None if the lane
    never progressed after ``start``. The time after a lane's last progress (no work left)
    is no gap."""
    index = bisect.bisect_left(times, start)
    if index == len(times):
        return None
    longest = times[index] - start
    while index + 1 < len(times) and times[index] < end:
        longest = max(longest, min(times[index + 1], end) - times[index])
        index += 1
    return longest


@dataclass(frozen=True, slots=True)
class Stall:
    """The worst lane of one kind after one change; ``seconds`` None: a lane never served."""

    seconds: float | None
    partition: int

    def describe(self) -> str:
        if self.seconds is None:
            return f"never (partition {self.partition})"
        return f"{self.seconds:,.1f} s (partition {self.partition})"


def worst(
    lanes: Mapping[Lane, Sequence[float]], kind: str, start: float, end: float
) -> tuple[Stall, Stall]:
    """(served again, longest gap) of the worst lane of ``kind`` after ``start``."""
    served: list[Stall] = []
    gaps: list[Stall] = []
    for (lane_kind, partition), times in sorted(lanes.items()):
        if lane_kind != kind:
            continue
        served.append(Stall(served_again(times, start), partition))
        gaps.append(Stall(longest_gap(times, start, end), partition))
    return _worst(served), _worst(gaps)


def _worst(stalls: list[Stall]) -> Stall:
    if not stalls:
        return Stall(None, -1)
    never = next((stall for stall in stalls if stall.seconds is None), None)
    return never or max(stalls, key=lambda stall: stall.seconds or 0.0)


@dataclass(frozen=True, slots=True)
class ChannelCount:
    """Deliveries of one channel topic against the accepted events."""

    topic: str
    expected: int
    delivered: int  # accepted events with at least one Delivery here
    missing: int
    repeated: int  # records beyond the first per notification id

    def describe(self) -> str:
        return (
            f"{self.topic}: {self.delivered:,} of {self.expected:,} events delivered once or "
            f"more; missing {self.missing:,}, repeated {self.repeated:,}"
        )


def channel_count(
    records: Iterable[Committed], topic: str, accepted_events: Iterable[str]
) -> ChannelCount:
    expected = set(accepted_events)
    per_notification = Counter(r.notification_id for r in records if r.topic == topic)
    events = {r.event_id for r in records if r.topic == topic}
    return ChannelCount(
        topic=topic,
        expected=len(expected),
        delivered=len(expected & events),
        missing=len(expected - events),
        repeated=sum(per_notification.values()) - len(per_notification),
    )


@dataclass(frozen=True, slots=True)
class Kill:
    label: str
    at: float  # perf_counter
    wall_at: float  # time.time(), to compare with the statuses' record timestamps
    # The delivery group's committed offsets of the email topic, read once the worker was
    # dead: it can commit nothing more, so a Delivery at or past one was not committed by it.
    committed: Mapping[int, int]


@dataclass(frozen=True, slots=True)
class Attempts:
    """When the delivery runtime announced an email (``sending``) and reported it ``sent``:
    the statuses' record timestamps (wall clock, seconds), by notification id."""

    sending: Mapping[str, Sequence[float]]
    sent: Mapping[str, Sequence[float]]

    def in_flight(self, notification: str, at: float) -> bool:
        """Announced at or before ``at`` and not reported sent by then."""
        announced = any(t <= at for t in self.sending.get(notification, ()))
        return announced and not any(t <= at for t in self.sent.get(notification, ()))


@dataclass(frozen=True, slots=True)
class KillRepeats:
    in_flight: int  # sending announced, not yet reported sent when the worker died
    finished: int  # reported sent, but its offset not committed yet


@dataclass(frozen=True, slots=True)
class MailCount:
    expected: int  # notification ids committed on the email topic
    missing: int  # never accepted by the sink
    duplicates: int  # acceptances beyond the first of their notification id
    by_kill: Mapping[str, KillRepeats]  # of those, repeats a kill explains
    other_at: Sequence[float]  # when each of the others was accepted, in order
    without_id: int

    @property
    def other(self) -> int:
        return len(self.other_at)


def mail_count(
    records: Iterable[Committed],
    email_topic: str,
    accepted: Mapping[str, Sequence[float]],
    *,
    kills: Sequence[Kill],
    attempts: Attempts,
    without_id: int,
) -> MailCount:
    """Emails against the Deliveries; each repeat is put down to the last kill before it that
    the email was accepted before, at an offset the killed worker's group had not committed
    (split by whether its attempt was still in flight then); other repeats are "other"."""
    where = {r.notification_id: (r.partition, r.offset) for r in records if r.topic == email_topic}
    in_flight = dict.fromkeys((kill.label for kill in kills), 0)
    finished = dict.fromkeys((kill.label for kill in kills), 0)
    other: list[float] = []
    for notification, times in accepted.items():
        ordered = sorted(times)
        for repeat in ordered[1:]:
            kill = _cause(kills, where.get(notification), ordered[0], repeat)
            if kill is None:
                other.append(repeat)
            elif attempts.in_flight(notification, kill.wall_at):
                in_flight[kill.label] += 1
            else:
                finished[kill.label] += 1
    return MailCount(
        expected=len(where),
        missing=sum(1 for n in where if not accepted.get(n)),
        duplicates=sum(max(0, len(times) - 1) for times in accepted.values()),
        by_kill={label: KillRepeats(in_flight[label], finished[label]) for label in in_flight},
        other_at=sorted(other),
        without_id=without_id,
    )


def _cause(
    kills: Sequence[Kill], at: tuple[int, int] | None, first: float, repeat: float
) -> Kill | None:
    if at is None:
        return None
    partition, offset = at
    for kill in reversed(kills):
        if first < kill.at <= repeat and offset >= kill.committed.get(partition, 0):
            return kill
    return None
