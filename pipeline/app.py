"""Assemble a Clarion worker: the Faust app, its topics, tables, agents and web views."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from agents.dispatch import Dispatcher
from agents.inbox import InboxFeed
from agents.records_out import OutputWriter, utc_iso
from agents.release import Sweeper
from agents.routing.render import TemplateRenderer
from pipeline.clock import Clock, clock_for
from pipeline.kafka import fetch_snapshot, isolation, resume_order, rewind
from pipeline.kafka.admin import TopicSpec
from pipeline.kafka.outbox import OutRecord, OversizedHandler, TransactionalOutbox, record_size
from pipeline.metrics import Metrics
from pipeline.settings import Settings
from pipeline.topics import TopicNames
from pipeline.web.server import ClarionWeb, faust_web_options
from schemas.records import UserPreferences
from tables.dedupe import changelog_config
from tables.timers import TimerTable, due_index
from tables.txstore import TransactionalTable

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"

# Tombstones in the timers changelog outlive any local copy trusted for recovery by 2x.
TIMERS_DELETE_RETENTION_S = 7 * 86400


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic a worker needs before it starts, all with the same partition count."""
    names = TopicNames(prefix=settings.topic_prefix)
    compacted = {"cleanup.policy": "compact"}
    configs = {
        names.preferences: compacted,
        # Compacted like its source: a forwarded tombstone or update is never aged out
        # before the preferences agent has read it.
        names.preferences_repartition: compacted,
        names.timers: {
            **compacted,
            "delete.retention.ms": str(TIMERS_DELETE_RETENTION_S * 1000),
        },
    }
    return [
        TopicSpec(name=name, partitions=settings.partitions, config=configs.get(name, {}))
        for name in [*names.user_keyed(), *names.other()]
    ]


def internal_topic_specs(app: faust.App) -> list[TopicSpec]:
    """Faust's own topics (table changelogs, the assignor's leader topic), as Faust declares them.

    Created with the others before the worker starts: left to Faust, they are declared while
    the worker is already consuming, and a table whose changelog the first rebalance saw with
    0 partitions ignores its writes until the next one.
    """
    specs = []
    for table in app.tables.values():
        topic = table.changelog_topic
        config = {str(k): str(v) for k, v in (topic.config or {}).items()}
        if "cleanup.policy" not in config:
            kinds = (("compact", topic.compacting), ("delete", topic.deleting))
            config["cleanup.policy"] = ",".join(name for name, on in kinds if on) or "delete"
        if topic.retention and "retention.ms" not in config:
            config["retention.ms"] = str(int(float(topic.retention) * 1000))
        specs.append(
            TopicSpec(name=topic.get_topic_name(), partitions=topic.partitions, config=config)
        )
    # The name faust/assignor/leader_assignor.py gives it; one partition, like Faust's.
    specs.append(TopicSpec(name=f"{app.conf.id}-__assignor-__leader", partitions=1))
    return specs


@dataclass(kw_only=True)
class Clarion:
    """One worker's wiring; agents receive this instead of reaching for globals."""

    settings: Settings
    app: faust.App
    topics: TopicNames
    events_topic: Any
    preferences_topic: Any
    preferences_table: Any
    dedupe_table: Any
    outbox: TransactionalOutbox
    writer: OutputWriter
    renderer: TemplateRenderer
    timer_table: TransactionalTable
    inbox_table: Any
    inbox_feed: InboxFeed
    status_table: Any
    dispatcher: Dispatcher
    sweeper: Sweeper
    clock: Clock
    metrics: Metrics


def _persisted_offset_recorder(app: faust.App, table: Any) -> Callable[[str, int, int], None]:
    """Tell the table how far its changelog is already in the local store, after a batch."""

    def record(topic: str, partition: int, offset: int) -> None:
        tp = TP(topic, partition)
        # A batch may land after its partition moved to another worker; leave that store be.
        if tp in app.assignor.assigned_actives():
            table.data.set_persisted_offset(tp, offset)

    return record


def _apply_committed(
    table: TransactionalTable,
) -> Callable[[int, list[OutRecord], dict[tuple[str, int], int]], None]:
    def apply(partition: int, records: list[OutRecord], last: dict[tuple[str, int], int]) -> None:
        offset = last.get((table.changelog_topic, partition))
        if offset is not None:
            table.apply(partition, records, offset)

    return apply


def _oversized_to_invalid(
    writer: OutputWriter, topics: TopicNames, limit: int, clock: Clock
) -> OversizedHandler:
    """An output the broker would refuse becomes a (bounded) invalid record saying so."""

    def replace(
        record: OutRecord, partition: int, source: tuple[str, int] | None
    ) -> list[OutRecord]:
        reason = (
            f"output for {record.topic}[{record.partition}] was {record_size(record)} bytes, "
            f"over the {limit}-byte record limit (CLARION_MAX_RECORD_BYTES); not written"
        )
        # Where it came from: the record at that offset, or the partition's timers firing.
        topic, offset = source if source is not None else (topics.timers, None)
        return [
            writer.invalid(
                raw=record.value,
                key=record.key,
                error=reason,
                topic=topic,
                partition=partition,
                offset=offset,
                at=utc_iso(clock()),
            )
        ]

    return replace


def create_app(settings: Settings, *, clock: Clock | None = None) -> Clarion:
    from agents.delivery.register import register_delivery  # noqa: PLC0415
    from agents.inbox import register_inbox  # noqa: PLC0415
    from agents.ingest import register_ingest  # noqa: PLC0415 - agents import this module
    from agents.preferences import register_preferences  # noqa: PLC0415
    from pipeline.web import register_web  # noqa: PLC0415

    rewind.install()
    fetch_snapshot.install()
    isolation.install()
    resume_order.install()
    topics = TopicNames(prefix=settings.topic_prefix)
    app = faust.App(
        # Faust names its changelogs and leader topic after the app id: the prefix keeps them
        # beside Clarion's own topics (one ACL, one deployment's topics apart from another's).
        settings.group_id,
        broker=settings.broker,
        store="rocksdb://",
        datadir=str(settings.data_dir / "tables"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        canonical_url=settings.advertised_url or f"http://{settings.web_host}:{settings.web_port}",
        producer_acks=-1,
        autodiscover=False,
        table_cleanup_interval=60.0,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 4),
        **faust_web_options(settings),
    )
    # Before any view is added: Clarion's web server serves Clarion's routes only.
    app.web = ClarionWeb(app)
    # Offsets of the events topics are committed by the outbox inside its transactions, never
    # by Faust: acks=False keeps Faust's own commit from running ahead of that output. Events
    # found off their user's partition come back through the repartition topic (agents/ingest).
    events_topic = app.topic(
        topics.events,
        topics.events_repartition,
        key_serializer="raw",
        value_serializer="raw",
        acks=False,
    )
    # Committed by the outbox too: a misplaced record's forward commits with its offset.
    preferences_topic = app.topic(
        topics.preferences,
        topics.preferences_repartition,
        key_serializer="raw",
        value_serializer="raw",
        acks=False,
    )
    preferences_table = app.Table(
        "preferences",
        key_type=str,
        value_type=UserPreferences,
        partitions=settings.partitions,
        help="Each user's preferences, keyed by user_id.",
    )
    dedupe_table = app.Table(
        "dedupe",
        key_type=str,
        partitions=settings.partitions,
        extra_topic_configs=changelog_config(settings.dedupe_window),
        help="Event ids and dedupe keys seen within the dedupe window.",
    )
    # Raw keys and values: rows of tables.inbox_rows, read by prefix from the local store.
    inbox_table = app.Table(
        "inbox",
        key_type=bytes,
        value_type=bytes,
        partitions=settings.partitions,
        help="Each user's in-app notifications, one row per item, and their read marks.",
    )
    status_table = app.Table(
        "status",
        key_type=str,
        partitions=settings.partitions,
        help="Every notification's status history, keyed by notification_id.",
    )
    template_dirs = [BUILTIN_TEMPLATES]
    if settings.template_dir is not None:
        template_dirs.insert(0, settings.template_dir)
    clock = clock or clock_for(settings.clock_file)
    timer_table = TransactionalTable(
        name="timers",
        changelog_topic=topics.timers,
        path=settings.data_dir / "timers",
        bootstrap_servers=settings.bootstrap_servers,
        index_of=due_index,
        max_checkpoint_age=TIMERS_DELETE_RETENTION_S / 2,
        consumer_options=dict(settings.kafka_options),
    )
    timers = TimerTable(table=timer_table)
    metrics = Metrics()
    writer = OutputWriter(topics=topics, partitions=settings.partitions, metrics=metrics)
    renderer = TemplateRenderer(template_dirs=template_dirs)
    dispatcher = Dispatcher(
        writer=writer,
        renderer=renderer,
        timers=timers,
        preferences=preferences_table,
        default_caps=settings.default_caps,
        digest_window_seconds=settings.digest_window,
    )
    clarion = Clarion(
        settings=settings,
        app=app,
        topics=topics,
        events_topic=events_topic,
        preferences_topic=preferences_topic,
        preferences_table=preferences_table,
        dedupe_table=dedupe_table,
        outbox=TransactionalOutbox(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.group_id,
            source_topic=topics.events,
            transactional_prefix=f"{settings.group_id}-ingest",
            max_pending=settings.commit_batch,
            changelog_topics=frozenset({dedupe_table.changelog_topic.get_topic_name()}),
            on_changelog_written=_persisted_offset_recorder(app, dedupe_table),
            on_committed=_apply_committed(timer_table),
            on_dropped=lambda partition: timer_table.release([partition]),
            producer_options=dict(settings.kafka_options),
            max_record_bytes=settings.max_record_bytes,
            # The preferences table is a Faust table: its changelog goes through Faust's
            # producer, which must have it on the broker before the offsets commit.
            written_elsewhere=frozenset({topics.preferences, topics.preferences_repartition}),
            flush_elsewhere=lambda: app.producer.flush(),  # noqa: PLW0108 - created lazily
            on_oversized=_oversized_to_invalid(writer, topics, settings.max_record_bytes, clock),
        ),
        writer=writer,
        renderer=renderer,
        timer_table=timer_table,
        inbox_table=inbox_table,
        inbox_feed=InboxFeed(),
        status_table=status_table,
        dispatcher=dispatcher,
        sweeper=Sweeper(
            dispatcher=dispatcher,
            timers=timers,
            preferences=preferences_table,
            clock=clock,
            metrics=metrics,
        ),
        clock=clock,
        metrics=metrics,
    )
    register_preferences(clarion)
    register_ingest(clarion)
    register_delivery(clarion)
    register_inbox(clarion)
    register_web(clarion)
    return clarion
