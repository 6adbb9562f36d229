from __future__ import annotations

from typing import NamedTuple

from pipeline.kafka.fetch_snapshot import split_fetched


class Record(NamedTuple):
    offset: int


def test_records_of_active_partitions_are_kept() -> None:
    records = {"events-0": [Record(2), Record(3)], "status-1": [Record(7)]}

    keep, rewind = split_fetched(records, {"events-0", "status-1"})

    assert keep == records
    assert rewind == {}


def test_a_partition_paused_during_the_fetch_is_sought_back_to_its_first_record() -> None:
    records = {"events-0": [Record(2), Record(3)], "status-1": [Record(7)]}

    keep, rewind = split_fetched(records, {"status-1"})

    assert keep == {"status-1": [Record(7)]}
    assert rewind == {"events-0": 2}


def test_an_empty_batch_needs_no_seek() -> None:
    keep, rewind = split_fetched({"events-0": []}, set())

    assert keep == {}
    assert rewind == {}
