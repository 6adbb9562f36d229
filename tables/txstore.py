"""A RocksDB table whose changelog is written inside the outbox's Kafka transactions.

Faust tables cannot take part in a transaction: their recovery waits for the offset of the
changelog's last record, and a transactional changelog ends in a commit marker that is never
delivered. Held notifications and digests need the stronger guarantee (releasing one and
deleting its timer must happen together or not at all), so they live here instead:

* a write is a changelog record; the agent hands it to the outbox together with the output it
  belongs to and stages it, which puts it in an in-memory overlay that reads see first;
* when the outbox has committed a batch, :meth:`TransactionalTable.apply` moves its writes
  from the overlay into RocksDB, with the changelog offset reached (the checkpoint);
* on assignment, :meth:`TransactionalTable.recover` reads the changelog from the checkpoint up
  to the last stable offset with ``read_committed``, so aborted writes never appear.

So later events of a pending batch see earlier ones' writes. A secondary index maintained on
apply (``index_of``) lets a sweep find entries by due time without keeping anything per entry
in memory.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import Options, Rdict, WriteBatch

from schemas.structs import OutRecord

logger = logging.getLogger(__name__)

# Local keys are <partition:2><kind:1><logical key>; kind separates data from its index.
_DATA = b"v"
_INDEX = b"i"
_CHECKPOINT = b"c"
_RECOVERY_POLL_MS = 500

IndexOf = Callable[[bytes, bytes], bytes | None]


def no_index(key: bytes, value: bytes) -> None:
    """For tables read by key only."""


class NotReadyError(RuntimeError):
    """The partition is not assigned to this worker or its recovery has not finished."""


def _prefix(partition: int, kind: bytes) -> bytes:
    return partition.to_bytes(2, "big") + kind


def _after(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError("a prefix of 0xff bytes has no upper bound")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def merge_rows(
    committed: Iterable[tuple[bytes, bytes]],
    pending: list[tuple[bytes, bytes | None]],
    *,
    backwards: bool = False,
) -> Iterator[tuple[bytes, bytes]]:
    """``committed`` rows with ``pending`` writes laid over them, both in the same key order.

    A pending write replaces the committed row of its key; a pending ``None`` deletes it.
    """
    index = 0

    def before(pending_key: bytes, key: bytes) -> bool:
        return pending_key > key if backwards else pending_key < key

    for key, value in committed:
        while index < len(pending) and before(pending[index][0], key):
            if (earlier := pending[index][1]) is not None:
                yield pending[index][0], earlier
            index += 1
        if index < len(pending) and pending[index][0] == key:
            replaced = pending[index][1]
            index += 1
            if replaced is not None:
                yield key, replaced
            continue
        yield key, value
    for key, rest in pending[index:]:
        if rest is not None:
            yield key, rest


@dataclass(kw_only=True)
class TransactionalTable:
    """One RocksDB database holding every partition this worker owns, plus overlays."""

    name: str
    changelog_topic: str
    path: Path
    bootstrap_servers: str
    index_of: IndexOf
    # Compaction drops tombstones after the changelog's delete.retention.ms; a local copy
    # older than that could keep entries deleted meanwhile, so it is rebuilt instead.
    max_checkpoint_age: float
    consumer_options: dict[str, object] = field(default_factory=dict)
    wall_clock: Callable[[], float] = time.time
    _db: Rdict | None = None
    _overlay: dict[int, dict[bytes, bytes | None]] = field(default_factory=dict)

    # -- lifecycle ---------------------------------------------------------------------

    def open(self) -> None:
        if self._db is None:
            self.path.mkdir(parents=True, exist_ok=True)
            options = Options(raw_mode=True)
            options.create_if_missing(create_if_missing=True)
            options.set_write_buffer_size(16 * 1024 * 1024)
            self._db = Rdict(str(self.path), options=options)

    def close(self) -> None:
        self._overlay.clear()
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> Rdict:
        if self._db is None:
            raise NotReadyError(f"table {self.name} is not open")
        return self._db

    def is_ready(self, partition: int) -> bool:
        return partition in self._overlay

    @property
    def ready_partitions(self) -> list[int]:
        return sorted(self._overlay)

    async def recover(self, partitions: Iterable[int]) -> None:
        """Bring the local copy of ``partitions`` up to the changelog's last stable offset.

        Call only after earlier owners are fenced (their open transactions aborted), so the
        last stable offset is final for as long as this worker owns the partitions.
        """
        self.open()
        wanted = sorted(set(partitions) - set(self._overlay))
        if not wanted:
            return
        started = time.monotonic()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            enable_auto_commit=False,
            isolation_level="read_committed",
            **self.consumer_options,
        )
        await consumer.start()
        try:
            tps = {TopicPartition(self.changelog_topic, p): p for p in wanted}
            consumer.assign(list(tps))
            for tp, partition in tps.items():
                consumer.seek(tp, self._checkpoint(partition))
            ends = await consumer.end_offsets(list(tps))
            applied = 0
            while remaining := [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                batches = await consumer.getmany(*remaining, timeout_ms=_RECOVERY_POLL_MS)
                for tp, messages in batches.items():
                    self._write(
                        tps[tp],
                        ((m.key or b"", m.value) for m in messages),
                        checkpoint=messages[-1].offset + 1,
                    )
                    applied += len(messages)
        finally:
            await consumer.stop()
        for partition in wanted:
            self._overlay[partition] = {}
        logger.info(
            "table %s recovered partitions %s (%d changes) in %.2f s",
            self.name,
            wanted,
            applied,
            time.monotonic() - started,
        )

    def assume_recovered(self, partitions: Iterable[int]) -> None:
        """Serve ``partitions`` from the local copy as it is, with no changelog to read.

        For tests and benchmarks that drive the table without a broker.
        """
        self.open()
        for partition in partitions:
            self._overlay.setdefault(partition, {})

    def release(self, partitions: Iterable[int]) -> None:
        """Forget uncommitted writes of partitions this worker no longer owns."""
        for partition in partitions:
            self._overlay.pop(partition, None)

    # -- reads and writes --------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> bytes | None:
        overlay = self._overlay_of(partition)
        if key in overlay:
            return overlay[key]
        value = self.db.get(_prefix(partition, _DATA) + key)
        return value if isinstance(value, bytes) else None

    def put(self, partition: int, key: bytes, value: bytes) -> OutRecord:
        r"""The changelog record of a write; it takes effect once :meth:`stage`\ d."""
        return OutRecord(self.changelog_topic, partition, key, value)

    def delete(self, partition: int, key: bytes) -> OutRecord:
        return OutRecord(self.changelog_topic, partition, key, None)

    def stage(self, partition: int, records: Iterable[OutRecord]) -> None:
        """Make the writes among ``records`` visible to reads, pending their commit.

        Separate from :meth:`put` so a computation that fails half-way leaves no trace: only
        records that were handed to the outbox are staged.
        """
        overlay = self._overlay_of(partition)
        topic = self.changelog_topic
        for record in records:
            if record.topic == topic:
                overlay[record.key or b""] = record.value

    def scan(
        self, partition: int, prefix: bytes, *, after: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries whose key starts with ``prefix`` (and is above ``after``), in key order.

        Pending writes included; lazy, so a caller taking a page reads little more than it.
        """
        overlay = self._overlay_of(partition)
        pending = sorted(
            (k, v)
            for k, v in overlay.items()
            if k.startswith(prefix) and (after is None or k > after)
        )
        committed = self._committed(partition, _DATA, prefix, after=after)
        return merge_rows(committed, pending)

    def iterate(
        self, partition: int, start: bytes, *, backwards: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries from ``start`` (or the nearest key past it) on, in key order or reversed.

        Pending writes included. For rows read by position rather than by prefix (an
        inbox's items, newest first, from a cursor), as :class:`tables.rows.Rows` reads them.
        """
        overlay = self._overlay_of(partition)
        pending = sorted(
            ((k, v) for k, v in overlay.items() if (k <= start if backwards else k >= start)),
            reverse=backwards,
        )
        data = _prefix(partition, _DATA)
        cut = len(data)

        def committed() -> Iterator[tuple[bytes, bytes]]:
            for local_key, value in self.db.items(from_key=data + start, backwards=backwards):
                assert isinstance(local_key, bytes)  # raw_mode
                if not local_key.startswith(data):
                    return
                yield local_key[cut:], value

        return merge_rows(committed(), pending, backwards=backwards)

    def index_range(self, partition: int, below: bytes, limit: int) -> list[bytes]:
        """Committed index keys lower than ``below``, lowest first: candidates, not facts.

        The caller re-reads each entry with :meth:`get`, which sees pending writes.
        """
        self._overlay_of(partition)
        found: list[bytes] = []
        for index_key, _ in self._committed(partition, _INDEX, b""):
            if index_key >= below or len(found) >= limit:
                break
            found.append(index_key)
        return found

    def _committed(
        self, partition: int, kind: bytes, prefix: bytes, *, after: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        start = _prefix(partition, kind) + prefix
        stop = _after(start)
        cut = len(_prefix(partition, kind))
        first = start if after is None else _prefix(partition, kind) + after
        for local_key, value in self.db.items(from_key=first):
            # raw_mode: keys and values are bytes.
            assert isinstance(local_key, bytes)
            if local_key >= stop:
                return
            if after is not None and local_key[cut:] <= after:
                continue
            yield local_key[cut:], value

    def _overlay_of(self, partition: int) -> dict[bytes, bytes | None]:
        overlay = self._overlay.get(partition)
        if overlay is None:
            raise NotReadyError(f"table {self.name} does not hold partition {partition} now")
        return overlay

    # -- after the outbox committed ----------------------------------------------------

    def apply(self, partition: int, records: Iterable[OutRecord], last_offset: int) -> None:
        """Persist a committed batch's writes; ``last_offset`` is its last changelog record's."""
        mine = [(r.key or b"", r.value) for r in records if r.topic == self.changelog_topic]
        if not mine:
            return
        self._write(partition, mine, checkpoint=last_offset + 1)
        overlay = self._overlay.get(partition)
        if overlay is None:
            return
        for key, value in mine:
            # Identity, not equality: a later pending batch may have written the same bytes.
            if key in overlay and overlay[key] is value:
                del overlay[key]

    def _write(
        self, partition: int, changes: Iterable[tuple[bytes, bytes | None]], *, checkpoint: int
    ) -> None:
        db = self.db
        data, index = _prefix(partition, _DATA), _prefix(partition, _INDEX)
        batch = WriteBatch(raw_mode=True)
        # Several changes to one key in a batch: the index must follow the last one.
        previous: dict[bytes, bytes | None] = {}
        indexed = self.index_of is not no_index
        for key, value in changes:
            if not indexed:
                # Nothing to keep in step: no read of the value written over.
                if value is None:
                    batch.delete(data + key)
                else:
                    batch.put(data + key, value)
                continue
            old = previous[key] if key in previous else db.get(data + key)
            if isinstance(old, bytes) and (old_index := self.index_of(key, old)) is not None:
                batch.delete(index + old_index)
            if value is None:
                batch.delete(data + key)
            else:
                batch.put(data + key, value)
                if (new_index := self.index_of(key, value)) is not None:
                    batch.put(index + new_index, b"")
            previous[key] = value
        batch.put(
            _prefix(partition, _CHECKPOINT),
            checkpoint.to_bytes(8, "big") + int(self.wall_clock()).to_bytes(8, "big"),
        )
        db.write(batch)

    def _checkpoint(self, partition: int) -> int:
        """Where recovery starts: after the last applied record, or 0 for a rebuild."""
        stored = self.db.get(_prefix(partition, _CHECKPOINT))
        if isinstance(stored, bytes) and len(stored) == 16:
            offset = int.from_bytes(stored[:8], "big")
            written_at = int.from_bytes(stored[8:], "big")
            if self.wall_clock() - written_at <= self.max_checkpoint_age:
                return offset
            logger.warning(
                "table %s partition %d: local copy too old to trust; rebuilding",
                self.name,
                partition,
            )
        self._wipe(partition)
        return 0

    def _wipe(self, partition: int) -> None:
        start = partition.to_bytes(2, "big")
        self.db.delete_range(start, (partition + 1).to_bytes(2, "big"))

    def destroy(self) -> None:
        """Remove the local copy entirely (tests and ``clarion dev --reset``)."""
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
