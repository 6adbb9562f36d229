"""OffsetTracker: the committable offset while records finish out of order, with gaps."""

from __future__ import annotations

import pytest

from pipeline.runtime.offsets import OffsetTracker

TP = ("clarion.deliver.email", 0)
OTHER = ("clarion.deliver.email", 1)


def started(*offsets: int) -> OffsetTracker:
    tracker = OffsetTracker()
    for offset in offsets:
        tracker.start(TP, offset)
    return tracker


def test_nothing_started_has_nothing_to_commit() -> None:
    tracker = OffsetTracker()
    assert tracker.committable(TP) is None
    assert tracker.positions() == {}


def test_the_first_unfinished_record_is_committable_while_it_is_in_flight() -> None:
    tracker = started(10, 11, 12)
    assert tracker.committable(TP) == 10
    tracker.finish(TP, 11)
    tracker.finish(TP, 12)
    # 10 is still in flight: a crash now must repeat it, so nothing past it commits.
    assert tracker.committable(TP) == 10
    tracker.finish(TP, 10)
    assert tracker.committable(TP) == 13
    assert tracker.in_flight(TP) == 0


def test_out_of_order_finishes_advance_only_the_finished_prefix() -> None:
    tracker = started(0, 1, 2, 3)
    tracker.finish(TP, 2)
    assert tracker.committable(TP) == 0
    tracker.finish(TP, 0)
    assert tracker.committable(TP) == 1
    tracker.finish(TP, 1)
    assert tracker.committable(TP) == 3
    assert tracker.in_flight(TP) == 1


def test_transaction_markers_leave_gaps_that_do_not_block_the_commit() -> None:
    # Records of a transactional topic: each commit marker took the offset in between.
    tracker = started(0, 2, 4, 6)
    for offset in (6, 2, 4):
        tracker.finish(TP, offset)
    assert tracker.committable(TP) == 0
    tracker.finish(TP, 0)
    # One past the last record fetched, not a wait for offsets 1, 3, 5 that never come.
    assert tracker.committable(TP) == 7


def test_the_next_gap_after_a_finished_prefix_is_skipped_too() -> None:
    tracker = started(5)
    tracker.finish(TP, 5)
    tracker.start(TP, 7)  # 6 was a commit marker
    assert tracker.committable(TP) == 7
    tracker.finish(TP, 7)
    assert tracker.committable(TP) == 8


def test_partitions_are_tracked_apart() -> None:
    tracker = started(0, 1)
    tracker.start(OTHER, 100)
    tracker.finish(TP, 0)
    tracker.finish(OTHER, 100)
    assert tracker.positions() == {TP: 1, OTHER: 101}


def test_records_must_start_in_fetch_order() -> None:
    tracker = started(3, 4)
    with pytest.raises(ValueError, match="fetch order"):
        tracker.start(TP, 4)
    with pytest.raises(ValueError, match="fetch order"):
        tracker.start(TP, 2)
    tracker.finish(TP, 3)
    tracker.finish(TP, 4)
    with pytest.raises(ValueError, match="fetch order"):
        tracker.start(TP, 4)


def test_finishing_unknown_or_repeated_records_changes_nothing() -> None:
    tracker = started(0, 1)
    tracker.finish(TP, 7)
    tracker.finish(OTHER, 0)
    tracker.finish(TP, 1)
    tracker.finish(TP, 1)
    assert tracker.committable(TP) == 0
    assert tracker.in_flight(TP) == 1


def test_a_forgotten_partition_ignores_late_finishes_and_starts_afresh() -> None:
    tracker = started(0, 1)
    tracker.finish(TP, 0)
    tracker.forget([TP])
    assert tracker.committable(TP) is None
    tracker.finish(TP, 1)  # an attempt the revoke did not wait for
    assert tracker.committable(TP) is None
    # Assigned again, it resumes from the committed offset, wherever that was.
    tracker.start(TP, 1)
    assert tracker.committable(TP) == 1
