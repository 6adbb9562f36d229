"""Assemble a Clarion worker: the Faust app, its topics, tables, agents and web views."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faust
from faust.types import TP

from agents.records_out import OutputWriter
from agents.routing.render import TemplateRenderer
from pipeline.kafka.admin import TopicSpec
from pipeline.kafka.outbox import TransactionalOutbox
from pipeline.settings import Settings
from pipeline.topics import TopicNames
from schemas.records import UserPreferences
from tables.dedupe import changelog_config

BUILTIN_TEMPLATES = Path(__file__).parent / "templates"


def utc_now() -> datetime:
    return datetime.now(UTC)


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic a worker needs before it starts, all with the same partition count."""
    names = TopicNames(prefix=settings.topic_prefix)
    compacted = {"cleanup.policy": "compact"}
    return [
        TopicSpec(
            name=name,
            partitions=settings.partitions,
            config=compacted if name == names.preferences else {},
        )
        for name in [*names.user_keyed(), *names.other()]
    ]


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
    clock: Callable[[], datetime] = field(default=utc_now)


def _persisted_offset_recorder(app: faust.App, table: Any) -> Callable[[str, int, int], None]:
    """Tell the table how far its changelog is already in the local store, after a batch."""

    def record(topic: str, partition: int, offset: int) -> None:
        tp = TP(topic, partition)
        # A batch may land after its partition moved to another worker; leave that store be.
        if tp in app.assignor.assigned_actives():
            table.data.set_persisted_offset(tp, offset)

    return record


def create_app(settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> Clarion:
    from agents.ingest import register_ingest  # noqa: PLC0415 - agents import this module
    from agents.preferences import register_preferences  # noqa: PLC0415
    from pipeline.web import register_web  # noqa: PLC0415

    topics = TopicNames(prefix=settings.topic_prefix)
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        store="rocksdb://",
        datadir=str(settings.data_dir / "tables"),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        web_port=settings.web_port,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        producer_acks=-1,
        autodiscover=False,
        table_cleanup_interval=60.0,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 4),
    )
    # Offsets of the events topic are committed by the outbox inside its transactions, never
    # by Faust: acks=False keeps Faust's own commit from running ahead of that output.
    events_topic = app.topic(
        topics.events, key_serializer="raw", value_serializer="raw", acks=False
    )
    preferences_topic = app.topic(topics.preferences, key_serializer="raw", value_serializer="raw")
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
    template_dirs = [BUILTIN_TEMPLATES]
    if settings.template_dir is not None:
        template_dirs.insert(0, settings.template_dir)
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
            group_id=settings.app_id,
            source_topic=topics.events,
            transactional_prefix=f"{settings.app_id}-ingest",
            max_pending=settings.commit_batch,
            changelog_topics=frozenset({dedupe_table.changelog_topic.get_topic_name()}),
            on_changelog_written=_persisted_offset_recorder(app, dedupe_table),
        ),
        writer=OutputWriter(topics=topics, partitions=settings.partitions),
        renderer=TemplateRenderer(template_dirs=template_dirs),
        clock=clock,
    )
    register_preferences(clarion)
    register_ingest(clarion)
    register_web(clarion)
    return clarion
