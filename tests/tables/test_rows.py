"""Rows of a transactional table as one operation writes them: its own writes apart until done."""

from __future__ import annotations

from pathlib import Path

import pytest

from tables.rows import StagedRows
from tables.txstore import TransactionalTable, no_index
from tests.helpers.timers import local_table

TOPIC = "c.state.inbox"


@pytest.fixture
def table(tmp_path: Path) -> TransactionalTable:
    table = local_table(tmp_path / "inbox", topic=TOPIC, index_of=no_index, partitions=range(1))
    committed = [table.put(0, key, b"committed") for key in (b"k1", b"k3")]
    table.stage(0, committed)
    table.apply(0, committed, last_offset=1)
    return table


def test_an_operation_reads_its_own_writes_before_the_table_sees_them(
    table: TransactionalTable,
) -> None:
    rows = StagedRows(table, 0)
    rows.put(b"k2", b"mine")
    rows.delete(b"k3")
    assert rows.get(b"k2") == b"mine"
    assert rows.get(b"k3") is None
    assert list(rows.iterate(b"k")) == [(b"k1", b"committed"), (b"k2", b"mine")]
    assert list(rows.iterate(b"k9", backwards=True)) == [(b"k2", b"mine"), (b"k1", b"committed")]
    # Not handed over yet: an operation that fails here leaves no trace.
    assert table.get(0, b"k2") is None
    assert table.get(0, b"k3") == b"committed"


def test_records_are_the_changelog_of_the_writes_and_staged_in_the_table(
    table: TransactionalTable,
) -> None:
    rows = StagedRows(table, 0)
    rows.put(b"k2", b"mine")
    rows.delete(b"k3")
    records = rows.records()
    assert [(r.topic, r.partition, r.key, r.value) for r in records] == [
        (TOPIC, 0, b"k2", b"mine"),
        (TOPIC, 0, b"k3", None),
    ]
    assert table.get(0, b"k2") == b"mine"
    assert table.get(0, b"k3") is None
    assert rows.records() == []  # handed over once
