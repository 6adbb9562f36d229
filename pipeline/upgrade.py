"""``clarion upgrade-state``: status histories and inboxes out of the earlier Faust tables.

Before the store runtime, a worker kept each notification's status history and each user's
in-app inbox in two Faust tables of its app ``<prefix><app id>``. They are transactional
tables now (tables/txstore.py) with changelogs of their own, and the store runtime starts
reading ``clarion.status``, ``deliver.in_app`` and ``inbox.commands`` where Faust's group
left them (pipeline/runtime/positions.py): what the old tables held must be copied across
once, with every worker stopped, before workers of the new version start.

======  ===============================  ================  ===============================
table   old changelog (Faust)            new changelog     conversion
======  ===============================  ================  ===============================
status  ``<group>-status-changelog``     ``state.status``  key: Faust's ``json`` codec of
                                                           the notification id (``"ntf_…"``,
                                                           quoted) → its UTF-8; value: the
                                                           history's JSON → orjson of it
inbox   ``<group>-inbox-changelog``      ``state.inbox``   none: Faust wrote the rows' raw
                                                           bytes (``key_type=bytes``), the
                                                           keys of tables/inbox_rows.py
======  ===============================  ================  ===============================

Each partition of an old changelog is read to its end (the last value of a key wins, a
tombstone drops it) into a scratch RocksDB under ``CLARION_DATA_DIR``, so memory does not
grow with the table, then written to the same partition of the new changelog by an
idempotent producer (``acks=all``; records outside transactions are visible to
``read_committed`` readers). Partition numbers carry over: the old agents wrote each row
into the partition of the record they were processing, which is the partition the new
tables read (murmur2 of the notification id, or of the user id).

Re-running is safe. Every record written here carries the header ``clarion-upgrade-state``,
and the last one of a partition says the copy completed. A partition is then:

* copied when its new changelog holds nothing, or only records of a copy that did not
  complete (written again whole: the same keys get the same values, compaction keeps one);
* left alone when its copy completed: a second run writes nothing;
* refused when workers of the new version wrote to it first: copying then would lay older
  values over newer ones. The command says how many entries were left out and exits 1.

The store runtime then starts where Faust's group committed, which can be a little behind
what the old tables had applied (Faust committed late); the records in between are applied
again, which changes nothing: a status already in a history is skipped, an inbox holds a
notification once, and a read mark keeps its first time. (Only an entry dropped by a bound
in between, past 50 statuses of one notification or the inbox size of one user, could come
back.)

Rows are written in key order. For an inbox that is items (``i``), then read marks (``n``),
then summaries (``s``): a copy cut short leaves no summary naming items it lacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import shutil
import tempfile
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaError,
)
from rocksdict import Options, Rdict

from pipeline.app import topic_specs
from pipeline.kafka.admin import TopicLayoutError, ensure_topics
from pipeline.settings import Settings
from schemas.structs import OutRecord, record_size
from schemas.topics import TopicNames

UPGRADE_HEADER = "clarion-upgrade-state"
COPIED = b"copied"
COMPLETE = b"complete"

_POLL_MS = 500
# Reading a partition gives up after this long without progress (a broker that stopped
# answering), rather than waiting for ever.
_STALL_S = 60.0
# Sends awaited together: bounds the futures held, not the throughput.
_IN_FLIGHT = 1000
_COORDINATOR_WAIT_S = 30.0
_EXAMPLES = 3


class UpgradeError(RuntimeError):
    """The copy cannot be made as things stand; the message says why and what to do."""


class LegacyRecordError(ValueError):
    """A record of an old changelog that is not what the old table wrote."""


def status_entry(key: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A status history of the Faust table as the transactional table keeps it."""
    try:
        notification_id = orjson.loads(key)
        history = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise LegacyRecordError(f"not JSON: {exc}") from None
    if not isinstance(notification_id, str):
        raise LegacyRecordError("the key is not a JSON string")
    if not (
        isinstance(history, dict)
        and history.get("notification_id") == notification_id
        and isinstance(history.get("entries"), list)
    ):
        raise LegacyRecordError("the value is not the status history of its key")
    # orjson.loads refuses lone surrogates, so the id encodes.
    return notification_id.encode(), orjson.dumps(history)


def inbox_entry(key: bytes, value: bytes) -> tuple[bytes, bytes]:
    """Inbox rows are the same bytes in both tables."""
    return key, value


@dataclass(frozen=True, kw_only=True)
class LegacyTable:
    name: str
    source: str
    target: str
    convert: Callable[[bytes, bytes], tuple[bytes, bytes]]


def legacy_tables(settings: Settings) -> list[LegacyTable]:
    names = TopicNames(prefix=settings.topic_prefix)
    # Faust names a table's changelog <app id>-<table>-changelog; the app id was group_id.
    app_id = settings.group_id
    return [
        LegacyTable(
            name="status",
            source=f"{app_id}-status-changelog",
            target=names.status_state,
            convert=status_entry,
        ),
        LegacyTable(
            name="inbox",
            source=f"{app_id}-inbox-changelog",
            target=names.inbox_state,
            convert=inbox_entry,
        ),
    ]


def worker_groups(settings: Settings) -> list[str]:
    """Groups whose members write the old or the new tables: Faust's (the earlier version's
    workers) and the store runtime's."""
    return [settings.group_id, settings.store_group_id]


class TargetState(enum.Enum):
    EMPTY = "empty"
    PARTIAL = "partial"
    COPIED = "copied"
    TAKEN = "taken"


@dataclass(kw_only=True)
class TableCopy:
    """What the upgrade did with one table."""

    table: LegacyTable
    partitions: int
    entries: int = 0
    copied: list[int] = field(default_factory=list)
    already_copied: list[int] = field(default_factory=list)
    # Partition → live entries of the old changelog left out (the new version wrote first).
    refused: dict[int, int] = field(default_factory=dict)
    unreadable: int = 0
    oversized: int = 0
    skipped_keys: list[bytes] = field(default_factory=list)

    def lines(self) -> list[str]:
        table = self.table
        lines = [
            f"{table.name}: copied {self.entries} entries in {len(self.copied)} of "
            f"{self.partitions} partitions, {table.source} -> {table.target}"
            + (f" (partitions {_listed(self.copied)})" if self.copied else "")
        ]
        if self.already_copied:
            lines.append(
                f"{table.name}: partitions {_listed(self.already_copied)} were copied by an "
                "earlier run; left as they are"
            )
        for partition, entries in sorted(self.refused.items()):
            lines.append(
                f"{table.name}: partition {partition}: {entries} entries NOT copied: "
                f"{table.target}[{partition}] was written by workers of the new version "
                "first, and copying now would overwrite newer state"
            )
        if self.unreadable or self.oversized:
            examples = ", ".join(repr(key[:80]) for key in self.skipped_keys)
            lines.append(
                f"{table.name}: {self.unreadable} unreadable and {self.oversized} oversized "
                f"entries skipped (e.g. {examples})"
            )
        return lines


@dataclass(kw_only=True)
class UpgradeReport:
    tables: list[TableCopy]
    missing: list[str]

    @property
    def left_out(self) -> int:
        return sum(sum(copy.refused.values()) for copy in self.tables)


async def upgrade_state(settings: Settings) -> UpgradeReport:
    """Copy what the old changelogs hold into the new ones; see the module's docstring."""
    tables = legacy_tables(settings)
    options = dict(settings.kafka_options)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers, **options)
    try:
        await admin.start()
        found = await _partition_counts(admin, [table.source for table in tables])
        present = [table for table in tables if table.source in found]
        missing = [table.source for table in tables if table.source not in found]
        if not present:
            return UpgradeReport(tables=[], missing=missing)
        wrong = [
            f"{name} has {count} partitions"
            for name, count in found.items()
            if count != settings.partitions
        ]
        if wrong:
            raise UpgradeError(
                f"{'; '.join(wrong)}, but CLARION_PARTITIONS is {settings.partitions}: run "
                "with the partition count of the earlier version"
            )
        busy = await _groups_with_members(admin, worker_groups(settings))
        if busy:
            raise UpgradeError(
                f"workers are running ({', '.join(busy)}): stop every worker, old and new, "
                "then run the upgrade again"
            )
    finally:
        await admin.close()
    wanted = {table.target for table in present}
    await ensure_topics(
        settings.bootstrap_servers,
        [spec for spec in topic_specs(settings) if spec.name in wanted],
        client_options=settings.kafka_options,
    )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",
        **options,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        **options,
    )
    async with contextlib.AsyncExitStack() as stack:
        await consumer.start()
        stack.push_async_callback(consumer.stop)
        await producer.start()
        stack.push_async_callback(producer.stop)
        scratch = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(prefix="upgrade-state-", dir=settings.data_dir)
            )
        )
        copier = _Copier(
            consumer=consumer,
            producer=producer,
            scratch=scratch,
            max_record_bytes=settings.max_record_bytes,
        )
        copies = [await copier.copy(table, settings.partitions) for table in present]
    return UpgradeReport(tables=copies, missing=missing)


def run_upgrade_state(settings: Settings, *, out: TextIO, err: TextIO) -> int:
    """The command: what was copied on ``out``; 1 and one line on ``err`` if it failed."""
    try:
        report = asyncio.run(upgrade_state(settings))
    except KafkaConnectionError as exc:
        print(f"upgrade-state: cannot reach {settings.bootstrap_servers}: {exc}", file=err)
        return 1
    except (KafkaError, UpgradeError, TopicLayoutError, OSError) as exc:
        # aiokafka's errors name their class in their text; Clarion's say what to do.
        print(f"upgrade-state: {exc}", file=err)
        return 1
    if not report.tables:
        print(
            f"no Faust changelogs of an earlier version ({', '.join(report.missing)}): "
            "nothing to copy",
            file=out,
        )
        return 0
    for copy in report.tables:
        for line in copy.lines():
            print(line, file=out)
    for name in report.missing:
        print(f"{name} does not exist: nothing to copy from it", file=out)
    if report.left_out:
        print(
            f"upgrade-state: {report.left_out} entries left out of partitions the new version "
            "wrote first (see above)",
            file=err,
        )
        return 1
    return 0


@dataclass(kw_only=True)
class _Copier:
    consumer: AIOKafkaConsumer
    producer: AIOKafkaProducer
    scratch: Path
    max_record_bytes: int

    async def copy(self, table: LegacyTable, partitions: int) -> TableCopy:
        report = TableCopy(table=table, partitions=partitions)
        for partition in range(partitions):
            state = await self._target_state(TopicPartition(table.target, partition))
            if state is TargetState.COPIED:
                report.already_copied.append(partition)
                continue
            path = self.scratch / f"{table.name}-{partition}"
            live = _scratch_db(path)
            try:
                count = await self._read_live(TopicPartition(table.source, partition), live)
                if count == 0:
                    continue
                if state is TargetState.TAKEN:
                    report.refused[partition] = count
                    continue
                written = await self._write(table, partition, _rows(live), report)
            finally:
                live.close()
                shutil.rmtree(path, ignore_errors=True)
            if written:
                report.copied.append(partition)
                report.entries += written
        return report

    async def _target_state(self, tp: TopicPartition) -> TargetState:
        """Who wrote the new changelog's partition: nobody, a copy (complete or not), or
        workers of the new version (records without the upgrade's header)."""
        state = TargetState.EMPTY
        async with contextlib.aclosing(self._records(tp)) as records:
            async for record in records:
                mark = dict(record.headers or ()).get(UPGRADE_HEADER)
                if mark is None:
                    return TargetState.TAKEN
                if mark == COMPLETE:
                    return TargetState.COPIED
                state = TargetState.PARTIAL
        return state

    async def _read_live(self, tp: TopicPartition, live: Rdict) -> int:
        """The partition's last value per key, tombstones applied; how many keys are left."""
        count = 0
        async with contextlib.aclosing(self._records(tp)) as records:
            async for record in records:
                key = record.key or b""
                held = live.get(key) is not None
                if record.value is None:
                    if held:
                        live.delete(key)
                        count -= 1
                else:
                    live[key] = record.value
                    count += not held
        return count

    async def _write(
        self,
        table: LegacyTable,
        partition: int,
        rows: Iterator[tuple[bytes, bytes]],
        report: TableCopy,
    ) -> int:
        """Send the converted rows; the last one, marked complete, once the others are in."""
        pending: list[asyncio.Future[Any]] = []
        previous: OutRecord | None = None
        written = 0
        for old_key, old_value in rows:
            try:
                key, value = table.convert(old_key, old_value)
            except LegacyRecordError:
                report.unreadable += 1
                _remember(report, old_key)
                continue
            record = OutRecord(table.target, partition, key, value)
            if record_size(record) > self.max_record_bytes:
                report.oversized += 1
                _remember(report, old_key)
                continue
            if previous is not None:
                pending.append(await self._send(previous, COPIED))
                if len(pending) >= _IN_FLIGHT:
                    await asyncio.gather(*pending)
                    pending.clear()
            previous = record
            written += 1
        await asyncio.gather(*pending)
        if previous is not None:
            await (await self._send(previous, COMPLETE))
        return written

    async def _send(self, record: OutRecord, mark: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self.producer.send(
            record.topic,
            record.value,
            key=record.key,
            partition=record.partition,
            headers=[(UPGRADE_HEADER, mark)],
        )
        return future

    async def _records(self, tp: TopicPartition) -> AsyncGenerator[Any, None]:
        """Every committed record of ``tp`` up to its end as of now."""
        consumer = self.consumer
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        position = await consumer.position(tp)
        progressed = time.monotonic()
        while position < end:
            batch = await consumer.getmany(tp, timeout_ms=_POLL_MS)
            for record in batch.get(tp, []):
                yield record
            moved = await consumer.position(tp)
            if moved > position:
                position, progressed = moved, time.monotonic()
            elif time.monotonic() - progressed > _STALL_S:
                raise UpgradeError(
                    f"{tp.topic}[{tp.partition}]: no progress for {_STALL_S:.0f} s at offset "
                    f"{position} of {end}"
                )


async def _partition_counts(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, int]:
    """Partitions of those of ``topics`` that exist."""
    return {
        description["topic"]: len(description["partitions"])
        for description in await admin.describe_topics(topics)
        if description.get("error_code", 0) == 0
    }


async def _groups_with_members(admin: AIOKafkaAdminClient, groups: list[str]) -> list[str]:
    busy = []
    for group_id in groups:
        # One group per request: aiokafka 0.14 fails to decode Kafka 4.1's answer about
        # several groups when one has members (and drops the connection).
        for group in await _described(admin, group_id):
            if group["error_code"] == 0 and group["members"]:
                count = len(group["members"])
                busy.append(f"group {group_id} has {count} member{'s' if count > 1 else ''}")
    return busy


async def _described(admin: AIOKafkaAdminClient, group_id: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + _COORDINATOR_WAIT_S
    while True:
        try:
            replies = await admin.describe_consumer_groups([group_id])
        except (GroupCoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            # A cluster whose offsets topic is still being created (its first group).
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)  # polling interval of the deadline loop
        else:
            return [
                group
                for reply in replies
                for group in reply.to_object()["groups"]
                if group["group"] == group_id
            ]


def _scratch_db(path: Path) -> Rdict:
    options = Options(raw_mode=True)
    options.create_if_missing(create_if_missing=True)
    return Rdict(str(path), options=options)


def _rows(db: Rdict) -> Iterator[tuple[bytes, bytes]]:
    for key, value in db.items():
        assert isinstance(key, bytes)  # raw_mode
        assert isinstance(value, bytes)
        yield key, value


def _remember(report: TableCopy, key: bytes) -> None:
    if len(report.skipped_keys) < _EXAMPLES:
        report.skipped_keys.append(key)


def _listed(partitions: list[int]) -> str:
    return ", ".join(str(p) for p in partitions)
