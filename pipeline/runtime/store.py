"""The store role's stage: what the web views read, kept from the records that change it.

* ``clarion.status`` → each notification's status history (:class:`agents.status.StatusRecorder`);
* ``clarion.deliver.in_app`` and ``clarion.inbox.commands`` → each user's in-app inbox
  (:class:`agents.inbox.InboxWriter`).

Both tables are transactional, so a history or inbox change commits in the partition's
checkpoint with the offset of the record that made it (pipeline/runtime/batch.py runs the
loop). The status topic is keyed by notification id and the other two by user; partition
*p* of each goes to one member, whose tables hold *p* of both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.inbox import InboxFeed, InboxWriter
from agents.invalid import invalid_message
from agents.records_out import OutputWriter
from agents.status import StatusRecorder
from pipeline.runtime.batch import Handler
from schemas.clock import Clock
from schemas.structs import OutRecord, SourceMessage
from schemas.topics import TopicNames
from tables.txstore import TransactionalTable


@dataclass(frozen=True, kw_only=True)
class StoreStage:
    topics: TopicNames
    tables: Sequence[TransactionalTable]
    recorder: StatusRecorder
    inbox: InboxWriter
    feed: InboxFeed
    writer: OutputWriter
    clock: Clock

    @property
    def source_topics(self) -> list[str]:
        """Deliveries before read marks: a mark fetched with the item it names finds it."""
        names = self.topics
        return [names.deliver("in_app"), names.inbox_commands, names.status]

    @property
    def legacy_topics(self) -> list[str]:
        return self.source_topics

    @property
    def leading_topics(self) -> tuple[str, ...]:
        return ()

    def handler(self, topic: str) -> Handler:
        names = self.topics
        if topic == names.status:
            return self.recorder.process
        if topic == names.inbox_commands:
            return self.inbox.command
        return self.inbox.deliver

    def unprocessable(self, message: SourceMessage, exc: Exception) -> list[OutRecord]:
        return [invalid_message(self.writer, self.clock, message, f"could not store: {exc!r}")]

    def after_batch(self, ready: Sequence[int]) -> list[tuple[int, list[OutRecord]]]:  # noqa: ARG002
        return []

    @property
    def has_more(self) -> bool:
        return False

    def released(self, partitions: Sequence[int]) -> None:  # noqa: ARG002
        # Live connections reconnect and find the new owner (they resume from the table).
        self.feed.close_all()
