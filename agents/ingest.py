"""Ingest and route in one hop: validate, drop duplicates, join preferences, render, emit.

:class:`EventRouter` is the whole decision for one Kafka message and does no I/O of its
own: it reads the tables it is given and returns the records to publish. The Faust agent
around it (:func:`register_ingest`) hands those records to the transactional outbox.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from faust.types import TP

from agents.dispatch import Arrival, Dispatcher, millis
from agents.records_out import OutputWriter, utc_iso
from agents.routing.render import TemplateError
from pipeline.kafka.outbox import (
    DEFAULT_MAX_RECORD_BYTES,
    OutboxCommitError,
    OutRecord,
    record_size,
)
from schemas.hold_horizon import DEFAULT_MAX_HOLD
from schemas.validation import HoldHorizon, Invalid, parse_event
from tables.dedupe import DedupeLedger, prune_expired

if TYPE_CHECKING:
    from pipeline.app import Clarion

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(kw_only=True, slots=True)
class EventRouter:
    writer: OutputWriter
    dispatcher: Dispatcher
    ledger: DedupeLedger
    dedupe_changelog: str
    max_event_bytes: int
    clock: Callable[[], datetime]
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    max_hold: float = DEFAULT_MAX_HOLD

    def process(self, message: SourceMessage) -> list[OutRecord]:
        now = self.clock()
        at = utc_iso(now)
        parsed = parse_event(
            message.value,
            max_bytes=self.max_event_bytes,
            horizon=HoldHorizon(now=now, max_hold=self.max_hold),
        )
        if isinstance(parsed, Invalid):
            return self.reject(message, parsed.reason, at, event_id=None, user_id=None)
        event = parsed
        if message.key != event.user_id.encode():
            reason = (
                f"message key {message.key!r} does not match user_id {event.user_id!r}; "
                "events must be keyed by user_id"
            )
            return self.reject(message, reason, at, event_id=event.event_id, user_id=event.user_id)

        source = (message.partition, message.offset)
        duplicate = self.ledger.check(
            user_id=event.user_id,
            event_id=event.event_id,
            dedupe_key=event.dedupe_key,
            source=source,
            now=now.timestamp(),
        )
        if duplicate is not None:
            return [self.dispatcher.event_status(event, "duplicate", at, duplicate.reason)]

        arrival = Arrival(
            partition=message.partition, sequence=message.offset, arrived_ms=millis(now)
        )
        try:
            routed = self.dispatcher.dispatch(event, arrival, now)
        except TemplateError as exc:
            return self.reject(
                message, str(exc), at, event_id=event.event_id, user_id=event.user_id
            )
        oversized = next((r for r in routed if record_size(r) > self.max_record_bytes), None)
        if oversized is not None:
            # The broker would refuse it and fail the whole batch with it, on every retry.
            reason = (
                f"its output for {oversized.topic} would be {record_size(oversized)} bytes, "
                f"over the {self.max_record_bytes}-byte record limit"
            )
            return self.reject(message, reason, at, event_id=event.event_id, user_id=event.user_id)
        self.dispatcher.timers.stage(message.partition, routed)
        remembered = self.ledger.record(
            user_id=event.user_id,
            event_id=event.event_id,
            dedupe_key=event.dedupe_key,
            source=source,
            now=now.timestamp(),
        )
        changes = [
            self.writer.table_change(self.dedupe_changelog, message.partition, key, value)
            for key, value in remembered
        ]
        accepted = self.dispatcher.event_status(event, "accepted", at)
        return [accepted, *routed, *changes]

    def reject(
        self,
        message: SourceMessage,
        reason: str,
        at: str,
        *,
        event_id: str | None,
        user_id: str | None,
    ) -> list[OutRecord]:
        invalid = self.writer.invalid(
            raw=message.value,
            key=message.key,
            error=reason,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            at=at,
        )
        status = self.writer.status(
            notification_id=event_id
            or f"invalid:{message.topic}:{message.partition}:{message.offset}",
            status="rejected",
            at=at,
            event_ids=[event_id] if event_id else [],
            user_id=user_id,
            reason=reason,
        )
        return [invalid, status]


def register_ingest(clarion: Clarion) -> None:
    """The Faust agent: one event at a time in, transactional batches out."""
    app = clarion.app
    outbox = clarion.outbox
    router = EventRouter(
        writer=clarion.writer,
        dispatcher=clarion.dispatcher,
        # The store, not the table: Faust would send one changelog message per write; the
        # router returns the changes and the outbox writes them in batches instead.
        ledger=DedupeLedger(table=clarion.dedupe_table.data, window=clarion.settings.dedupe_window),
        dedupe_changelog=clarion.dedupe_table.changelog_topic.get_topic_name(),
        max_event_bytes=clarion.settings.max_event_bytes,
        max_record_bytes=clarion.settings.max_record_bytes,
        clock=clarion.clock,
        max_hold=clarion.settings.max_hold,
    )
    events_topic = clarion.events_topic.get_topic_name()
    event_in = clarion.metrics.event_in
    observe_processing = clarion.metrics.agent_timer("clarion.ingest")

    async def commit(flush: Awaitable[None]) -> None:
        try:
            await flush
        except OutboxCommitError as exc:
            # The batch is gone from memory and its offsets are not committed: carrying on
            # would commit later offsets over it. Stop; a restart processes it again.
            await app.crash(exc)

    @app.agent(clarion.events_topic, name="clarion.ingest")
    async def ingest(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            message = event.message
            source = SourceMessage(
                topic=events_topic,
                partition=message.partition,
                offset=message.offset,
                key=message.key,
                value=message.value,
            )
            event_in()
            started = time.perf_counter()
            try:
                records = router.process(source)
            except Exception as exc:
                # A bug must not ack the event silently: park it on the invalid topic instead.
                logger.exception(
                    "routing failed for %s[%d]@%d", events_topic, source.partition, source.offset
                )
                records = router.reject(
                    source,
                    f"internal error while routing: {exc!r}",
                    utc_iso(clarion.clock()),
                    event_id=None,
                    user_id=None,
                )
            observe_processing(time.perf_counter() - started)
            if outbox.add(source.partition, source.offset, records):
                await commit(outbox.flush(source.partition))

    window = clarion.settings.dedupe_window

    @app.timer(max(1.0, min(600.0, window / 4)), name="clarion.dedupe.prune")  # type: ignore[untyped-decorator]
    async def prune_dedupe() -> None:
        pruned = await prune_expired(
            clarion.dedupe_table.data, window=window, now=clarion.clock().timestamp()
        )
        if pruned:
            logger.info("pruned %d expired dedupe entries", pruned)

    @app.timer(clarion.settings.commit_linger, name="clarion.ingest.commit")  # type: ignore[untyped-decorator]
    async def commit_pending() -> None:
        await commit(outbox.flush_all())

    timer_table, sweeper = clarion.timer_table, clarion.sweeper

    @app.timer(clarion.settings.sweep_interval, name="clarion.timers.sweep")  # type: ignore[untyped-decorator]
    async def sweep_due() -> None:
        swept = False
        for partition in timer_table.ready_partitions:
            records = sweeper.sweep(partition)
            if records:
                outbox.add_unsourced(partition, records)
                swept = True
        if swept:
            await commit(outbox.flush_all())

    # mode's signal handler type (VarArg/NamedArg) has no spelling mypy accepts here.
    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def claim_assigned(_sender: Any, *_: Any, signal: Any, **__: Any) -> None:  # noqa: ARG001
        # Faust reads the committed offsets right after this signal, so fencing here means
        # it never starts from an offset a dead worker's transaction is about to change.
        assigned = [tp.partition for tp in app.consumer.assignment() if tp.topic == events_topic]
        await outbox.claim(assigned)
        # Fenced first, so the timers changelog cannot change under the recovery.
        await timer_table.recover(assigned)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def release_revoked(_sender: Any, *args: Any, signal: Any, **__: Any) -> None:  # noqa: ARG001
        revoked: set[TP] = args[0]
        partitions = [tp.partition for tp in revoked if tp.topic == events_topic]
        await outbox.release(partitions)
        timer_table.release(partitions)
