"""The faults bench's figures from made-up observations: gaps, counts and who caused a repeat."""

from __future__ import annotations

from bench.fault_figures import (
    Attempts,
    Kill,
    channel_count,
    longest_gap,
    mail_count,
    progress,
    served_again,
    worst,
)
from bench.observed import Committed

EMAIL, IN_APP = "t.deliver.email", "t.deliver.in_app"


def committed(topic: str, partition: int, offset: int, event: str, at: float) -> Committed:
    return Committed(
        topic=topic,
        partition=partition,
        offset=offset,
        notification_id=f"{topic[-5:]}-{event}",
        event_id=event,
        at=at,
    )


def test_served_again_is_the_first_progress_at_or_after_the_change() -> None:
    assert served_again([1.0, 2.0, 5.0], 2.0) == 0.0
    assert served_again([1.0, 2.0, 5.0], 2.5) == 2.5
    assert served_again([1.0, 2.0], 3.0) is None


def test_longest_gap_cuts_later_pauses_at_the_window_but_not_the_first() -> None:
    times = [1.0, 2.0, 5.0, 9.0]
    assert longest_gap(times, 1.5, 10.0) == 4.0  # 5 -> 9
    assert longest_gap(times, 1.5, 6.0) == 3.0  # 5 -> 9 is the next change's from 6 on
    assert longest_gap([10.0], 0.0, 5.0) == 10.0  # not served until after the window
    assert longest_gap(times, 9.5, 20.0) is None  # no work left after the last progress


def test_progress_puts_emails_on_their_delivery_partition_and_deliveries_on_the_event_one() -> None:
    records = [
        committed(EMAIL, 3, 0, "e1", at=1.0),
        committed(IN_APP, 3, 0, "e1", at=1.5),
    ]
    lanes = progress(records, {"e1": 3}, {"email-e1": [2.0, 7.0]}, EMAIL)
    assert lanes == {("events", 3): [1.0, 1.5], ("email", 3): [2.0, 7.0]}
    served, gap = worst(lanes, "email", 1.0, 10.0)
    assert (served.seconds, served.partition, gap.seconds) == (1.0, 3, 5.0)


def test_channel_count_finds_missing_events_and_repeated_notifications() -> None:
    records = [
        committed(EMAIL, 0, 0, "e1", 1.0),
        committed(EMAIL, 0, 1, "e1", 2.0),
        committed(IN_APP, 0, 0, "e1", 1.0),
    ]
    count = channel_count(records, EMAIL, ["e1", "e2"])
    assert (count.expected, count.delivered, count.missing, count.repeated) == (2, 1, 1, 1)


def test_a_repeat_is_the_kills_only_if_sent_before_it_and_uncommitted_by_then() -> None:
    records = [
        committed(EMAIL, 0, 10, "in-flight", 1.0),  # past the committed offset 10
        committed(EMAIL, 0, 11, "finished", 1.0),  # past it too, and reported sent in time
        committed(EMAIL, 0, 9, "committed", 1.0),  # below it: the kill cannot explain it
        committed(EMAIL, 1, 50, "after", 1.0),  # first sent after the kill
        committed(EMAIL, 1, 51, "missing", 1.0),
    ]
    accepted = {
        "email-in-flight": [4.0, 6.0, 7.0],
        "email-finished": [4.0, 6.0],
        "email-committed": [4.0, 6.0],
        "email-after": [6.0, 6.5],
    }
    # Status timestamps are wall clock: the kill happened at 105.0 there.
    attempts = Attempts(
        sending={"email-in-flight": [103.9], "email-finished": [103.0]},
        sent={"email-finished": [103.5], "email-in-flight": [106.0]},
    )
    kill = Kill(label="A SIGKILLed", at=5.0, wall_at=105.0, committed={0: 10, 1: 0})
    mail = mail_count(records, EMAIL, accepted, kills=[kill], attempts=attempts, without_id=0)
    assert (mail.expected, mail.missing, mail.duplicates) == (5, 1, 5)
    repeats = mail.by_kill["A SIGKILLed"]
    assert (repeats.in_flight, repeats.finished) == (2, 1)
    assert mail.other == 2
