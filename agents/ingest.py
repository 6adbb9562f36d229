"""Ingest and route in one hop: validate, drop duplicates, join preferences, render, emit.

:class:`EventRouter` is the whole decision for one Kafka message and does no I/O of its
own: it reads the tables it is given and returns the records to publish, with its state
changes staged; the route runtime (pipeline/runtime/route.py) commits them in the partition's
checkpoint.

A valid event found on another partition than murmur2 of its key (a producer on another
partitioner, such as librdkafka's default) would not find its user's preferences, dedupe
entries or timers, which live in the murmur2 partition. It is forwarded instead, unchanged,
to that partition of the events repartition topic, in the checkpoint that commits its
offset; the same runtime reads the repartition topic and routes what it finds there like any
event, its offsets committed in the transaction of the partition they are on. Only misplaced
events pay that extra hop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from agents.dispatch import Arrival, Dispatcher, millis
from agents.records_out import OutputWriter, utc_iso
from agents.rejections import rejection
from agents.routing.render import TemplateError
from schemas.hold_horizon import DEFAULT_MAX_HOLD
from schemas.message_keys import user_id_of_key
from schemas.partitioner import partition_for_key
from schemas.records import NotificationEvent
from schemas.structs import DEFAULT_MAX_RECORD_BYTES, OutRecord, SourceMessage, record_size
from schemas.validation import HoldHorizon, Invalid, parse_event
from tables.dedupe import REPARTITIONED, DedupeLedger, Source

__all__ = ["EventRouter", "SourceMessage"]

# Digest items are ordered (and keyed) by arrival time and sequence: the offset. Offsets of the
# repartition topic are moved out of the events topic's range so the two never collide.
_REPARTITIONED_SEQUENCE = 1 << 62


@dataclass(kw_only=True, slots=True)
class EventRouter:
    writer: OutputWriter
    dispatcher: Dispatcher
    ledger: DedupeLedger
    max_event_bytes: int
    clock: Callable[[], datetime]
    # Where events found off their key's murmur2 partition (of ``partitions``) are forwarded.
    repartition_topic: str
    partitions: int
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
        keyed_by = user_id_of_key(message.key)
        if isinstance(keyed_by, Invalid):
            return self.reject(
                message, keyed_by.reason, at, event_id=event.event_id, user_id=event.user_id
            )
        if keyed_by != event.user_id:
            reason = (
                f"message key {message.key!r} does not match user_id {event.user_id!r}; "
                "events must be keyed by user_id"
            )
            return self.reject(message, reason, at, event_id=event.event_id, user_id=event.user_id)
        via_repartition = message.topic == self.repartition_topic
        if not via_repartition and self._misplaced(message):
            # Validated above, so an invalid event is reported where its producer put it.
            return [self._forward(message)]
        return self._route(message, event, now, at, via_repartition=via_repartition)

    def _misplaced(self, message: SourceMessage) -> bool:
        assert message.key is not None  # checked by the caller: it names a user
        return partition_for_key(message.key, self.partitions) != message.partition

    def _forward(self, message: SourceMessage) -> OutRecord:
        assert message.key is not None
        return self.writer.forward(
            topic=self.repartition_topic,
            key=message.key,
            value=message.value,
            from_topic=message.topic,
        )

    def _route(
        self,
        message: SourceMessage,
        event: NotificationEvent,
        now: datetime,
        at: str,
        *,
        via_repartition: bool,
    ) -> list[OutRecord]:
        # Dedupe entries say which topic their offset is on (see tables/dedupe.py).
        source: Source = (
            (message.partition, message.offset, REPARTITIONED)
            if via_repartition
            else (message.partition, message.offset)
        )
        sequence = message.offset + (_REPARTITIONED_SEQUENCE if via_repartition else 0)
        duplicate = self.ledger.check(
            message.partition,
            user_id=event.user_id,
            event_id=event.event_id,
            dedupe_key=event.dedupe_key,
            source=source,
            now=now.timestamp(),
        )
        if duplicate is not None:
            return [self.dispatcher.event_status(event, "duplicate", at, duplicate.reason)]

        arrival = Arrival(partition=message.partition, sequence=sequence, arrived_ms=millis(now))
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
            message.partition,
            user_id=event.user_id,
            event_id=event.event_id,
            dedupe_key=event.dedupe_key,
            source=source,
            now=now.timestamp(),
        )
        self.ledger.table.stage(message.partition, remembered)
        accepted = self.dispatcher.event_status(event, "accepted", at)
        return [accepted, *routed, *remembered]

    def reject(
        self,
        message: SourceMessage,
        reason: str,
        at: str,
        *,
        event_id: str | None,
        user_id: str | None,
    ) -> list[OutRecord]:
        return rejection(self.writer, message, reason, at, event_id=event_id, user_id=user_id)
