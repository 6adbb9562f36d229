"""Byte-keyed rows of one partition's RocksDB store, read in key order.

Faust's table API reads and writes one key at a time; a value that must be read by prefix
(a user's inbox items, newest first) needs the store's ordered iteration, which Faust's
RocksDB store does not expose. :class:`TableRows` reads the partition's database directly
and writes through the table, so every write is still a changelog record.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, cast

from faust import current_event
from rocksdict import Rdict


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


@dataclass(frozen=True, slots=True)
class TableRows:
    """Rows of one partition of a Faust table whose keys and values are raw bytes.

    Writes are allowed only while processing an event of that same partition: Faust sends
    the changelog record to the current event's partition and stores the row there.
    """

    table: Any
    partition: int

    def _local(self) -> LocalRows:
        # One RocksDB database per partition; the caller owns the partition, so it is open.
        return LocalRows(self.table.data._db_for_partition(self.partition))

    def get(self, key: bytes) -> bytes | None:
        return self._local().get(key)

    def iterate(self, start: bytes, *, backwards: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self._local().iterate(start, backwards=backwards)

    def put(self, key: bytes, value: bytes) -> None:
        self._check_writable()
        self.table[key] = value

    def delete(self, key: bytes) -> None:
        self._check_writable()
        del self.table[key]

    def _check_writable(self) -> None:
        event = current_event()
        if event is None or event.message.partition != self.partition:
            where = "outside an agent" if event is None else f"in {event.message.partition}"
            raise RuntimeError(f"rows of partition {self.partition} written {where}")
