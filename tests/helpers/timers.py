"""Transactional tables and a dispatcher on a temporary RocksDB, with no broker behind them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from agents.dispatch import Dispatcher
from agents.records_out import OutputWriter
from agents.routing.render import TemplateRenderer
from pipeline.app import BUILTIN_TEMPLATES
from schemas.records import UserPreferences
from schemas.structs import OutRecord
from schemas.topics import TopicNames
from tables.dedupe import seen_index
from tables.timers import TimerTable, due_index
from tables.txstore import IndexOf, TransactionalTable

TOPICS = TopicNames(prefix="c.")


def local_table(
    path: Path, *, topic: str, index_of: IndexOf, partitions: range = range(8)
) -> TransactionalTable:
    """A transactional table on a temporary RocksDB, serving ``partitions``."""
    table = TransactionalTable(
        name=path.name,
        changelog_topic=topic,
        path=path,
        bootstrap_servers="unused:9092",
        index_of=index_of,
        max_checkpoint_age=3600.0,
    )
    table.assume_recovered(partitions)
    return table


def local_timer_table(path: Path, partitions: range = range(8)) -> TransactionalTable:
    return local_table(path, topic=TOPICS.timers, index_of=due_index, partitions=partitions)


def local_dedupe_table(path: Path) -> TransactionalTable:
    return local_table(path, topic=TOPICS.dedupe_state, index_of=seen_index)


def dispatcher(
    table: TransactionalTable,
    preferences: Mapping[str, UserPreferences],
    *,
    default_caps: Mapping[str, int] | None = None,
    digest_window: float = 3600.0,
) -> Dispatcher:
    return Dispatcher(
        writer=OutputWriter(topics=TOPICS, partitions=8),
        renderer=TemplateRenderer(template_dirs=[BUILTIN_TEMPLATES]),
        timers=TimerTable(table=table),
        preferences=preferences,
        default_caps=default_caps or {},
        digest_window_seconds=digest_window,
    )


def commit(table: TransactionalTable, partition: int, records: list[OutRecord]) -> None:
    """What the outbox does after a transaction: persist the batch's table writes."""
    table.apply(partition, records, last_offset=len(records))
