"""What ``clarion bench faults`` prints: counts, duplicates and stalls against issue 11's targets.

* after a SIGKILL or the broker restart, every partition served again in < 15 s;
* a graceful stop: no pause (no partition's longest gap beyond the steady state's, plus a
  margin for the rebalance's own round trips);
* every accepted event on each channel topic exactly once, for ``read_committed`` readers;
* no email missing, and no duplicate email but those a killed worker had in flight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bench.fault_figures import (
    Attempts,
    ChannelCount,
    Lane,
    MailCount,
    channel_count,
    longest_gap,
    mail_count,
    progress,
    worst,
)
from bench.fault_plan import Done, Scenario
from bench.observed import Committed

TARGET_STALL_S = 15.0
PAUSE_MARGIN_S = 1.0
# Steps less than this apart (B's kill and D's join) share their window of measurement.
SAME_MOMENT_S = 1.0
_SHOWN_REPEATS = 5
_KINDS = (("email", "email accepted"), ("events", "events routed"))  # as fault_figures.KINDS


@dataclass(frozen=True, slots=True)
class Observed:
    records: list[Committed]
    accepted: dict[str, list[float]]  # notification id -> every SMTP acceptance
    without_id: int
    attempts: Attempts
    drained_at: float | None  # None: not everything arrived in time
    unexpected_exits: list[str]  # workers that exited although no step ended them


def report(scenario: Scenario, observed: Observed | None, *, events: int) -> None:
    assert observed is not None, "report() needs a finished run"
    stream, topics = scenario.stream, scenario.broker.topics
    email = topics.deliver("email")
    print("what happened (seconds into the stream):")
    for done in scenario.done:
        notes = f": {'; '.join(done.notes)}" if done.notes else ""
        print(f"  {done.at - stream.started:6.1f} s  {done.step.label}{notes}")
    for line in observed.unexpected_exits:
        print(f"  UNEXPECTED: worker {line}")
    if observed.drained_at is None:
        print(
            "  NOT drained: deliveries or emails not there yet when the bench stopped waiting, "
            "counted as missing below"
        )
    else:
        print(f"  {observed.drained_at - stream.started:6.1f} s  everything delivered")
    print(
        f"events accepted: {len(stream.partition_of):,} of {events:,} ({stream.failed:,} "
        f"refused), sent in {stream.ended - stream.started:.1f} s; the sender was at most "
        f"{stream.most_behind_s:.2f} s behind its schedule"
    )
    accepted_events = stream.partition_of.keys()
    counts = [
        channel_count(observed.records, topic, accepted_events)
        for topic in (email, topics.deliver("in_app"))
    ]
    for count in counts:
        print(f"read_committed {count.describe()}")
    mail = mail_count(
        observed.records,
        email,
        observed.accepted,
        kills=scenario.kills,
        attempts=observed.attempts,
        without_id=observed.without_id,
    )
    print(describe_mail(mail, started=stream.started))
    lanes = progress(observed.records, stream.partition_of, observed.accepted, email)
    print_stalls(scenario.done, lanes, started=stream.started, ended=stream.ended)
    print(verdict(counts, mail), flush=True)


def describe_mail(mail: MailCount, *, started: float) -> str:
    kills = ", ".join(
        f"{r.in_flight + r.finished:,} after {label} ({r.in_flight:,} in flight at the kill, "
        f"{r.finished:,} sent but not committed yet)"
        for label, r in mail.by_kill.items()
    )
    without = f"; {mail.without_id:,} without a notification id" if mail.without_id else ""
    return (
        f"SMTP sink: {mail.expected:,} emails expected (one per notification on the email "
        f"topic), missing {mail.missing:,}, duplicates {mail.duplicates:,}: "
        f"{kills or 'no kill'}; {mail.other:,} other (not explained by a kill)"
        f"{_when(mail, started)}{without}"
    )


def _when(mail: MailCount, started: float) -> str:
    """When the first few of the other repeats came, to find their cause in the logs."""
    if not mail.other_at:
        return ""
    shown = ", ".join(f"{at - started:.1f}" for at in mail.other_at[:_SHOWN_REPEATS])
    more = ", ..." if mail.other > _SHOWN_REPEATS else ""
    return f", accepted at {shown}{more} s into the stream"


def print_stalls(
    done: Sequence[Done], lanes: Mapping[Lane, list[float]], *, started: float, ended: float
) -> None:
    first_change = done[0].at if done else ended
    # Steady state: from a second into the stream (the first batches are in) to the first change.
    steady = {kind: _steady(lanes, kind, started + 1.0, first_change) for kind, _ in _KINDS}
    print(
        "partitions without progress after each change, worst partition (served again: first "
        "email accepted / Delivery committed after the change; longest gap: also any pause "
        f"until the next change); steady state before the first change: longest gap "
        f"{steady['email']:.2f} s (email), {steady['events']:.2f} s (events)"
    )
    for index, change in enumerate(done):
        if change.at >= ended:
            print(f"  {change.step.label}: after the last event was sent, nothing to measure")
            continue
        end = _window_end(done, index, ended)
        parts, met = [], True
        for kind, what in _KINDS:
            served, gap = worst(lanes, kind, change.at, end)
            parts.append(f"{what}: served again {served.describe()}, longest gap {gap.describe()}")
            if change.step.kind in ("kill", "restart"):
                met &= all(
                    s is not None and s < TARGET_STALL_S for s in (served.seconds, gap.seconds)
                )
            elif change.step.kind == "stop":
                met &= gap.seconds is not None and gap.seconds <= steady[kind] + PAUSE_MARGIN_S
        target = {
            "kill": f"target < {TARGET_STALL_S:g} s",
            "restart": f"target < {TARGET_STALL_S:g} s",
            "stop": f"target no pause (steady state + {PAUSE_MARGIN_S:g} s)",
        }.get(change.step.kind)
        verdict_text = f"; {target}: {'met' if met else 'NOT met'}" if target else ""
        if target and change.target_gone:
            verdict_text = f"; {target}: not measured, the worker had already exited"
        print(f"  {change.step.label}: {'; '.join(parts)}{verdict_text}")


def _steady(lanes: Mapping[Lane, list[float]], kind: str, start: float, end: float) -> float:
    gaps = [longest_gap(times, start, end) for (k, _), times in lanes.items() if k == kind]
    return max((gap for gap in gaps if gap is not None), default=0.0)


def _window_end(done: Sequence[Done], index: int, ended: float) -> float:
    """Up to the next change that is not at the same moment, else the stream's end."""
    at = done[index].at
    later = [d.at for d in done[index + 1 :] if d.at > at + SAME_MOMENT_S]
    return later[0] if later else ended


def verdict(counts: Sequence[ChannelCount], mail: MailCount) -> str:
    exact = all(c.missing == 0 and c.repeated == 0 for c in counts)
    return (
        f"every accepted event on each channel topic exactly once: {'yes' if exact else 'NO'}; "
        f"emails missing: {mail.missing:,}; duplicate emails not put down to a SIGKILL: "
        f"{mail.other:,}"
    )
