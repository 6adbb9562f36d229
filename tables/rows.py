"""Byte-keyed rows of one partition's RocksDB store, read in key order.

A value that must be read by position (a user's inbox items, newest first, from a cursor)
needs the store's ordered iteration. :class:`Rows` is that interface; :class:`StagedRows`
gives it over a partition of a transactional table, whose writes are changelog records that
commit in the partition's checkpoint; :class:`LocalRows` over a bare RocksDB database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, cast

from rocksdict import Rdict

from schemas.structs import OutRecord
from tables.txstore import TransactionalTable, merge_rows


class Rows(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def iterate(self, start: bytes, *, backwards: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Rows from ``start`` (or the nearest key past it) on, in key order or reversed."""
        ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class LocalRows:
    """Rows of a RocksDB database (opened with ``raw_mode``) that this process owns."""

    db: Rdict

    def get(self, key: bytes) -> bytes | None:
        return cast(bytes | None, self.db.get(key))

    def iterate(self, start: bytes, *, backwards: bool = False) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self.db.items(from_key=start, backwards=backwards):
            yield cast(bytes, key), cast(bytes, value)

    def put(self, key: bytes, value: bytes) -> None:
        self.db[key] = value

    def delete(self, key: bytes) -> None:
        del self.db[key]


@dataclass(slots=True)
class StagedRows:
    """Rows of one partition of a :class:`~tables.txstore.TransactionalTable`.

    Reads see the table (its pending writes included) with this operation's own writes laid
    over it; the writes are kept here until :meth:`records` hands them over as changelog
    records, so an operation that fails half-way leaves the table as it was.
    """

    table: TransactionalTable
    partition: int
    _writes: dict[bytes, bytes | None] = field(default_factory=dict)

    def get(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self.table.get(self.partition, key)

    def iterate(self, start: bytes, *, backwards: bool = False) -> Iterator[tuple[bytes, bytes]]:
        pending = sorted(
            ((k, v) for k, v in self._writes.items() if (k <= start if backwards else k >= start)),
            reverse=backwards,
        )
        table_rows = self.table.iterate(self.partition, start, backwards=backwards)
        return merge_rows(table_rows, pending, backwards=backwards)

    def put(self, key: bytes, value: bytes) -> None:
        self._writes[key] = value

    def delete(self, key: bytes) -> None:
        self._writes[key] = None

    def records(self) -> list[OutRecord]:
        """The changelog records of the writes so far, staged in the table: hand them to the
        outbox with the output they belong to."""
        partition, table = self.partition, self.table
        written = [
            table.put(partition, key, value) if value is not None else table.delete(partition, key)
            for key, value in self._writes.items()
        ]
        self._writes.clear()
        table.stage(partition, written)
        return written
