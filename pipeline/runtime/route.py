"""The route role's stage: events, preferences and retries, and the timers that fall due.

Every record goes through its pure core (:class:`~agents.ingest.EventRouter`,
:class:`~agents.preferences.PreferencesUpdater`, :func:`~agents.retry.schedule_retry`); after
each batch one partition's due timers are swept. State (dedupe, preferences, timers) is on
transactional tables, so it commits in the partition's checkpoint with the outputs
(pipeline/runtime/batch.py runs the loop).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from agents.ingest import EventRouter
from agents.preferences import PreferencesUpdater
from agents.records_out import utc_iso
from agents.rejections import rejection
from agents.release import Sweeper
from agents.retry import schedule_retry
from pipeline.metrics import Metrics
from pipeline.runtime.batch import Handler
from schemas.clock import Clock
from schemas.structs import OutRecord, SourceMessage
from schemas.topics import TopicNames
from tables.dedupe import DedupeLedger
from tables.timers import TimerTable
from tables.txstore import TransactionalTable


@dataclass(kw_only=True)
class RouteStage:
    topics: TopicNames
    tables: Sequence[TransactionalTable]
    router: EventRouter
    updater: PreferencesUpdater
    timers: TimerTable
    sweeper: Sweeper
    ledger: DedupeLedger
    clock: Clock
    metrics: Metrics
    sweep_interval: float
    _next_sweep: float = 0.0
    _sweep_turn: int = 0
    _sweep_busy: bool = False
    _observe_routing: Callable[[float], None] | None = field(default=None, repr=False)

    @property
    def source_topics(self) -> list[str]:
        """Preferences first: an update fetched in the same batch as an event published after
        it applies to that event, as it would have had they come in separate batches."""
        names = self.topics
        return [
            names.preferences,
            names.preferences_repartition,
            names.events,
            names.events_repartition,
            names.retry,
        ]

    @property
    def legacy_topics(self) -> tuple[str, ...]:
        return (self.topics.events, self.topics.retry)

    @property
    def leading_topics(self) -> tuple[str, ...]:
        """A partition taken over with a backlog applies the preferences published before
        its events first (on a cold start its events would otherwise be routed for users
        it does not know yet)."""
        return (self.topics.preferences, self.topics.preferences_repartition)

    def handler(self, topic: str) -> Handler:
        names = self.topics
        if topic in (names.events, names.events_repartition):
            return self._route_event
        if topic in (names.preferences, names.preferences_repartition):
            return self.updater.process
        return self._schedule_retry

    def unprocessable(self, message: SourceMessage, exc: Exception) -> list[OutRecord]:
        reason = f"internal error while processing: {exc!r}"
        at = utc_iso(self.clock())
        return rejection(self.router.writer, message, reason, at, event_id=None, user_id=None)

    def released(self, partitions: Sequence[int]) -> None:
        """Nothing is kept per partition outside the tables."""

    def _route_event(self, message: SourceMessage) -> list[OutRecord]:
        if message.topic == self.topics.events:
            self.metrics.event_in()  # a forwarded event was counted where it was first read
        if self._observe_routing is None:
            self._observe_routing = self.metrics.agent_timer("clarion.ingest")
        started = time.perf_counter()
        try:
            return self.router.process(message)
        finally:
            self._observe_routing(time.perf_counter() - started)

    def _schedule_retry(self, message: SourceMessage) -> list[OutRecord]:
        return schedule_retry(self.timers, message, self.clock)

    def after_batch(self, ready: Sequence[int]) -> list[tuple[int, list[OutRecord]]]:
        """Sweep one partition's due timers per batch, in turn.

        A partition's sweep releases at most the sweeper's batch limit: between two
        partitions' sweeps the loop routes what arrived meanwhile, so a burst of digests
        closing does not hold up critical events behind it for the whole burst. While a
        round released something, the next round starts at once; otherwise it waits for
        the sweep interval.
        """
        now = time.monotonic()
        if now < self._next_sweep:
            return []
        if not ready:
            self._next_sweep = now + self.sweep_interval
            return []
        partition = ready[self._sweep_turn % len(ready)]
        self._sweep_turn += 1
        released = self.sweeper.sweep(partition)
        expired = self.ledger.expired(partition, now=self.clock().timestamp())
        self.ledger.table.stage(partition, expired)
        output = []
        if released or expired:
            output.append((partition, [*released, *expired]))
            self._sweep_busy = True
        if self._sweep_turn % len(ready) == 0:
            self._next_sweep = now if self._sweep_busy else now + self.sweep_interval
            self._sweep_busy = False
        return output

    @property
    def has_more(self) -> bool:
        """A round of sweeps is under way."""
        return self._next_sweep <= time.monotonic()
