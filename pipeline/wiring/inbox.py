"""The in-app channel's Faust agents: deliveries into each user's inbox, and read marks.

* ``clarion.deliver.in_app`` → the inbox table (one row per item, see tables.inbox_rows:
  newest first, bounded, idempotent on the notification id) and status ``sent``;
* ``clarion.inbox.commands`` (user-keyed): ``{"user_id", "command": "mark_read",
  "notification_ids": [...] | null, "at"}`` published by the web API, so that read marks
  change the table through Kafka like every other write.

The live feed they publish to is :class:`agents.inbox.InboxFeed`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from agents.records_out import utc_iso
from agents.telemetry import SENT
from pipeline.wiring.delivery import publish, unprocessable
from tables.inbox import item_from_delivery
from tables.inbox_rows import UserInbox
from tables.rows import TableRows

if TYPE_CHECKING:
    from pipeline.app import Clarion

logger = logging.getLogger(__name__)

MARK_READ = "mark_read"


def register_inbox(clarion: Clarion) -> None:
    app = clarion.app
    inbox, feed = clarion.inbox_table, clarion.inbox_feed
    max_items = clarion.settings.delivery.inbox_size
    deliveries = app.topic(
        clarion.topics.deliver("in_app"), key_serializer="raw", value_serializer="raw"
    )
    commands = app.topic(
        clarion.topics.inbox_commands, key_serializer="raw", value_serializer="raw"
    )

    metrics = clarion.metrics

    @app.agent(deliveries, name="clarion.deliver.in_app")
    async def store(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            message = event.message
            try:
                delivery = orjson.loads(message.value)
                now = clarion.clock()
                at = utc_iso(now)
                user_id = delivery["user_id"]
                user_inbox = UserInbox(TableRows(inbox, message.partition), user_id)
                item = item_from_delivery(delivery, delivered_at=at)
                stored = user_inbox.add(item, max_items=max_items)
                if stored is not None:
                    feed.publish(user_id, stored)
                records = [
                    clarion.writer.status(
                        notification_id=delivery["notification_id"],
                        status="sent",
                        at=at,
                        event_ids=list(delivery["event_ids"]),
                        user_id=user_id,
                        channel="in_app",
                        reason="stored in the in-app inbox",
                    )
                ]
                metrics.delivery("in_app", "inbox", SENT)
                metrics.sent("in_app", delivery.get("priority"), delivery.get("created_at"), now)
            except Exception as exc:
                logger.exception("in-app delivery %d@%d failed", message.partition, message.offset)
                records = [unprocessable(clarion, message, exc)]
            await publish(app, records)

    @app.agent(commands, name="clarion.inbox.commands")
    async def apply_commands(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            message = event.message
            try:
                _apply_command(TableRows(inbox, message.partition), orjson.loads(message.value))
            except Exception as exc:
                logger.exception("inbox command %d@%d refused", message.partition, message.offset)
                await publish(app, [unprocessable(clarion, message, exc)])

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def end_streams(_sender: Any, *_: Any, signal: Any, **__: Any) -> None:  # noqa: ARG001
        feed.close_all()


def _apply_command(rows: TableRows, command: dict[str, Any]) -> None:
    if command.get("command") != MARK_READ:
        raise ValueError(f"unknown inbox command {command.get('command')!r}")
    user_inbox = UserInbox(rows, command["user_id"])
    user_inbox.mark_read(command.get("notification_ids"), at=command["at"])


def mark_read_command(user_id: str, notification_ids: list[str] | None, at: str) -> bytes:
    return orjson.dumps(
        {"user_id": user_id, "command": MARK_READ, "notification_ids": notification_ids, "at": at}
    )
