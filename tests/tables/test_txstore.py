"""The transactional table's local side: overlay, apply, index, scans; no broker needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tables.txstore import NotReadyError, TransactionalTable
from tests.helpers.timers import local_table

TOPIC = "c.timers"


def index_by_value(key: bytes, value: bytes) -> bytes | None:
    # Index rows whose value starts with "due:" by that value; others not at all.
    return value + b"|" + key if value.startswith(b"due:") else None


@pytest.fixture
def table(tmp_path: Path) -> TransactionalTable:
    return local_table(tmp_path / "t", topic=TOPIC, index_of=index_by_value, partitions=range(2))


def test_writes_are_invisible_until_staged_and_durable_once_applied(
    table: TransactionalTable,
) -> None:
    record = table.put(0, b"k", b"v")
    assert table.get(0, b"k") is None
    table.stage(0, [record])
    assert table.get(0, b"k") == b"v"
    assert table.get(1, b"k") is None  # partitions are separate
    table.apply(0, [record], last_offset=41)
    table.release([0])
    table.assume_recovered([0])  # overlay gone: what remains is in RocksDB
    assert table.get(0, b"k") == b"v"


def test_a_partition_not_held_refuses_reads(table: TransactionalTable) -> None:
    with pytest.raises(NotReadyError):
        table.get(5, b"k")


def test_scan_merges_pending_writes_and_deletes_in_key_order(table: TransactionalTable) -> None:
    committed = [table.put(0, k, b"old") for k in (b"p1", b"p3", b"p5", b"q1")]
    table.stage(0, committed)
    table.apply(0, committed, last_offset=3)
    pending = [table.put(0, b"p2", b"new"), table.delete(0, b"p3"), table.put(0, b"p5", b"new")]
    table.stage(0, pending)

    assert list(table.scan(0, b"p")) == [(b"p1", b"old"), (b"p2", b"new"), (b"p5", b"new")]
    assert list(table.scan(0, b"p", after=b"p1")) == [(b"p2", b"new"), (b"p5", b"new")]
    assert list(table.scan(0, b"p", after=b"p2")) == [(b"p5", b"new")]


def test_iterate_runs_both_ways_from_a_key_within_its_partition(
    table: TransactionalTable,
) -> None:
    committed = [table.put(0, k, b"old") for k in (b"a", b"c", b"e")]
    committed.append(table.put(1, b"b", b"other partition"))
    table.stage(0, committed[:3])
    table.apply(0, committed[:3], last_offset=2)
    table.stage(1, committed[3:])
    table.apply(1, committed[3:], last_offset=0)
    table.stage(0, [table.put(0, b"d", b"new"), table.delete(0, b"c"), table.put(0, b"f", b"new")])

    assert list(table.iterate(0, b"b")) == [(b"d", b"new"), (b"e", b"old"), (b"f", b"new")]
    assert list(table.iterate(0, b"d", backwards=True)) == [(b"d", b"new"), (b"a", b"old")]
    assert next(table.iterate(0, b"z", backwards=True)) == (b"f", b"new")
    assert list(table.iterate(1, b"")) == [(b"b", b"other partition")]


def test_apply_keeps_a_later_pending_write_of_the_same_key(table: TransactionalTable) -> None:
    first = [table.put(0, b"k", b"one")]
    table.stage(0, first)
    second = [table.put(0, b"k", b"two")]
    table.stage(0, second)
    table.apply(0, first, last_offset=0)
    assert table.get(0, b"k") == b"two"


def test_the_index_follows_the_last_value_and_forgets_deleted_rows(
    table: TransactionalTable,
) -> None:
    writes = [table.put(0, b"a", b"due:2"), table.put(0, b"b", b"due:1"), table.put(0, b"c", b"x")]
    table.stage(0, writes)
    table.apply(0, writes, last_offset=2)
    assert table.index_range(0, b"due:3", limit=10) == [b"due:1|b", b"due:2|a"]

    moved = [table.put(0, b"a", b"due:5"), table.delete(0, b"b")]
    table.stage(0, moved)
    table.apply(0, moved, last_offset=4)
    assert table.index_range(0, b"due:3", limit=10) == []
    assert table.index_range(0, b"due:9", limit=10) == [b"due:5|a"]
