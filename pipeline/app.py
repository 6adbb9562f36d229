"""Assemble a Clarion worker: the Faust app, its topics, tables, agents and web views."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faust
from faust.app.base import BootStrategy

from agents.dispatch import Dispatcher
from agents.inbox import InboxFeed, InboxWriter
from agents.ingest import EventRouter
from agents.preferences import PreferencesUpdater
from agents.records_out import OutputWriter, utc_iso
from agents.release import Sweeper
from agents.routing.render import TemplateRenderer
from agents.status import StatusRecorder
from pipeline.kafka.admin import TopicSpec
from pipeline.kafka.outbox import OversizedHandler, TransactionalOutbox
from pipeline.metrics import Metrics
from pipeline.roles import ROUTE, STORE, delivery_channels
from pipeline.runtime.batch import BatchRuntime, Stage
from pipeline.runtime.consumers import ConsumerConfig
from pipeline.runtime.members import GroupOwners, member_client_id
from pipeline.runtime.route import RouteStage
from pipeline.runtime.service import run_with
from pipeline.runtime.store import StoreStage
from pipeline.settings import Settings
from pipeline.web.server import ClarionWeb, faust_web_options
from schemas.clock import Clock, clock_for
from schemas.structs import OutRecord, record_size
from schemas.topics import TopicNames
from tables.dedupe import DedupeLedger, seen_index
from tables.preferences import PreferencesStore
from tables.status_history import StatusHistories
from tables.timers import TimerTable, due_index
from tables.txstore import IndexOf, TransactionalTable, no_index

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"

# Tombstones in the state changelogs outlive any local copy trusted for recovery by 2x.
STATE_DELETE_RETENTION_S = 7 * 86400


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic a worker needs before it starts, all with the same partition count."""
    names = TopicNames(prefix=settings.topic_prefix)
    compacted = {"cleanup.policy": "compact"}
    state = {**compacted, "delete.retention.ms": str(STATE_DELETE_RETENTION_S * 1000)}
    configs = {
        names.preferences: compacted,
        # Compacted like its source: a forwarded tombstone or update is never aged out
        # before the route runtime has read it.
        names.preferences_repartition: compacted,
        names.timers: state,
        names.dedupe_state: state,
        names.preferences_state: state,
        names.status_state: state,
        names.inbox_state: state,
    }
    return [
        TopicSpec(name=name, partitions=settings.partitions, config=configs.get(name, {}))
        for name in [*names.user_keyed(), *names.other()]
    ]


@dataclass(kw_only=True)
class Clarion:
    """One worker's wiring; agents receive this instead of reaching for globals."""

    settings: Settings
    app: faust.App
    topics: TopicNames
    preferences: PreferencesStore
    writer: OutputWriter
    renderer: TemplateRenderer
    timer_table: TransactionalTable
    inbox_table: TransactionalTable
    inbox_feed: InboxFeed
    statuses: StatusHistories
    dispatcher: Dispatcher
    route: BatchRuntime
    route_owners: GroupOwners
    store: BatchRuntime
    store_owners: GroupOwners
    clock: Clock
    metrics: Metrics


def _apply_committed(
    tables: list[TransactionalTable],
) -> Callable[[int, list[OutRecord], dict[tuple[str, int], int]], None]:
    def apply(partition: int, records: list[OutRecord], last: dict[tuple[str, int], int]) -> None:
        for table in tables:
            offset = last.get((table.changelog_topic, partition))
            if offset is not None:
                table.apply(partition, records, offset)

    return apply


def _release_fenced(tables: list[TransactionalTable]) -> Callable[[int], None]:
    """A partition another worker fenced us out of: its uncommitted state is not ours."""

    def release(partition: int) -> None:
        for table in tables:
            table.release([partition])

    return release


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


def _state_table(
    settings: Settings, name: str, topic: str, index_of: IndexOf
) -> TransactionalTable:
    return TransactionalTable(
        name=name,
        changelog_topic=topic,
        path=settings.data_dir / name,
        bootstrap_servers=settings.bootstrap_servers,
        index_of=index_of,
        max_checkpoint_age=STATE_DELETE_RETENTION_S / 2,
        consumer_options=dict(settings.kafka_options),
    )


def create_app(settings: Settings, *, clock: Clock | None = None) -> Clarion:
    from pipeline.web import register_web  # noqa: PLC0415
    from pipeline.wiring.delivery import register_delivery  # noqa: PLC0415

    topics = TopicNames(prefix=settings.topic_prefix)
    advertised = settings.advertised_url or f"http://{settings.web_host}:{settings.web_port}"
    app = faust.App(
        # Under the topic prefix, like everything of a deployment (one ACL, one deployment's
        # topics and groups apart from another's).
        settings.group_id,
        broker=settings.broker,
        datadir=str(settings.data_dir / "tables"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        canonical_url=advertised,
        producer_acks=-1,
        autodiscover=False,
        **faust_web_options(settings),
    )
    # Faust consumes none of Clarion's topics (the runtimes do): no consumer, conductor, table
    # manager or leader assignor, and no thread of Faust's contending for the GIL.
    app.boot_strategy = BootStrategy(app, enable_kafka_consumer=False)
    # Before any view is added: Clarion's web server serves Clarion's routes only.
    app.web = ClarionWeb(app)
    template_dirs = [BUILTIN_TEMPLATES]
    if settings.template_dir is not None:
        template_dirs.insert(0, settings.template_dir)
    clock = clock or clock_for(settings.clock_file)
    timer_table = _state_table(settings, "timers", topics.timers, due_index)
    preferences_table = _state_table(settings, "preferences", topics.preferences_state, no_index)
    preferences = PreferencesStore(table=preferences_table, partitions=settings.partitions)
    timers = TimerTable(table=timer_table)
    metrics = Metrics()
    writer = OutputWriter(topics=topics, partitions=settings.partitions, metrics=metrics)
    renderer = TemplateRenderer(template_dirs=template_dirs)
    dispatcher = Dispatcher(
        writer=writer,
        renderer=renderer,
        timers=timers,
        preferences=preferences,
        default_caps=settings.default_caps,
        digest_window_seconds=settings.digest_window,
    )
    ledger = DedupeLedger(
        table=_state_table(settings, "dedupe", topics.dedupe_state, seen_index),
        window=settings.dedupe_window,
    )
    sweeper = Sweeper(
        dispatcher=dispatcher,
        timers=timers,
        preferences=preferences,
        clock=clock,
        metrics=metrics,
        # Per partition and turn (pipeline/runtime/route.py): what routing may wait behind.
        batch_limit=250,
    )
    route_stage = RouteStage(
        topics=topics,
        tables=[timer_table, ledger.table, preferences_table],
        router=EventRouter(
            writer=writer,
            dispatcher=dispatcher,
            ledger=ledger,
            max_event_bytes=settings.max_event_bytes,
            max_record_bytes=settings.max_record_bytes,
            clock=clock,
            max_hold=settings.max_hold,
            repartition_topic=topics.events_repartition,
            partitions=settings.partitions,
        ),
        updater=PreferencesUpdater(
            store=preferences,
            writer=writer,
            on_changed=sweeper.touch,
            clock=clock,
            max_bytes=settings.max_event_bytes,
            partitions=settings.partitions,
            repartition_topic=topics.preferences_repartition,
        ),
        timers=timers,
        sweeper=sweeper,
        ledger=ledger,
        clock=clock,
        metrics=metrics,
        sweep_interval=settings.sweep_interval,
    )
    inbox_table = _state_table(settings, "inbox", topics.inbox_state, no_index)
    statuses = StatusHistories(
        table=_state_table(settings, "status", topics.status_state, no_index),
        partitions=settings.partitions,
    )
    feed = InboxFeed()
    store_stage = StoreStage(
        topics=topics,
        tables=[statuses.table, inbox_table],
        recorder=StatusRecorder(histories=statuses),
        inbox=InboxWriter(
            table=inbox_table,
            feed=feed,
            writer=writer,
            telemetry=metrics,
            clock=clock,
            max_items=settings.delivery.inbox_size,
        ),
        feed=feed,
        writer=writer,
        clock=clock,
    )
    (route, route_owners), (store, store_owners) = (
        _batch_runtime(
            settings,
            stage,
            group_id=group_id,
            transactions=transactions,
            advertised=advertised,
            writer=writer,
            clock=clock,
        )
        for stage, group_id, transactions in (
            (route_stage, settings.route_group_id, "ingest"),
            (store_stage, settings.store_group_id, "store"),
        )
    )
    clarion = Clarion(
        settings=settings,
        app=app,
        topics=topics,
        preferences=preferences,
        writer=writer,
        renderer=renderer,
        timer_table=timer_table,
        inbox_table=inbox_table,
        inbox_feed=feed,
        statuses=statuses,
        dispatcher=dispatcher,
        route=route,
        route_owners=route_owners,
        store=store,
        store_owners=store_owners,
        clock=clock,
        metrics=metrics,
    )
    if ROUTE in settings.roles:
        run_with(app, route, "route runtime")
    if STORE in settings.roles:
        run_with(app, store, "store runtime")
    register_delivery(clarion, delivery_channels(settings.roles))
    register_web(clarion)
    return clarion


def _batch_runtime(
    settings: Settings,
    stage: Stage,
    *,
    group_id: str,
    transactions: str,
    advertised: str,
    writer: OutputWriter,
    clock: Clock,
) -> tuple[BatchRuntime, GroupOwners]:
    """A stage's loop in a consumer group of its own, and who owns its partitions."""
    tables = list(stage.tables)
    owners = GroupOwners(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=group_id,
        topic=stage.source_topics[0],
        client_options=settings.kafka_options,
    )
    topics = TopicNames(prefix=settings.topic_prefix)
    runtime = BatchRuntime(
        consumer_config=ConsumerConfig(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=group_id,
            # Other workers find this one's web server from it (the views' owner routing).
            client_id=member_client_id(advertised),
            session_timeout=settings.runtime_session_timeout,
            max_records=settings.commit_batch,
            options=settings.kafka_options,
        ),
        stage=stage,
        outbox=TransactionalOutbox(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=group_id,
            source_topic=stage.source_topics[0],
            transactional_prefix=f"{settings.group_id}-{transactions}",
            max_pending=settings.commit_batch,
            on_committed=_apply_committed(tables),
            on_dropped=_release_fenced(tables),
            producer_options=dict(settings.kafka_options),
            max_record_bytes=settings.max_record_bytes,
            on_oversized=_oversized_to_invalid(writer, topics, settings.max_record_bytes, clock),
        ),
        legacy_group_id=settings.group_id,
        on_owned=owners.set_local,
    )
    return runtime, owners
