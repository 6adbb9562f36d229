"""The delivery side as Faust agents: one per channel topic, plus retries and the status table.

* ``clarion.deliver.<email|sms|push|webhook>``: :class:`ChannelSender` per delivery, several in
  flight per worker (the agents write no tables, so Faust allows the concurrency). Their
  records are acknowledged by the broker before the delivery's offset can be committed:
  a crash repeats the attempt (same notification id, so the provider's idempotency key
  recognises it) rather than losing it.
* ``clarion.deliver.in_app`` is stored in the user's inbox table (agents/inbox.py).
* ``clarion.retry``: read by the route runtime (agents/retry.py).
* ``clarion.status``: the history of every notification, in a table keyed by its id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, Any

import orjson

from agents.delivery.attempt import ChannelSender, ForgetAddress, ProviderSlot
from agents.delivery.breaker import CircuitBreaker
from agents.delivery.providers import build_providers
from agents.delivery.providers.base import Provider
from agents.delivery.providers.smtp import SmtpProvider
from agents.delivery.ratelimit import TokenBucket
from agents.records_out import encode_records, utc_iso
from pipeline.kafka.outbox import OutRecord
from pipeline.kafka.partitioner import partition_for_key
from tables.status_history import append_status

if TYPE_CHECKING:
    import faust

    from pipeline.app import Clarion

logger = logging.getLogger(__name__)

EXTERNAL_CHANNELS = ("email", "sms", "push", "webhook")


def register_delivery(clarion: Clarion) -> None:
    providers = build_providers(clarion.settings.providers)
    for channel in EXTERNAL_CHANNELS:
        _register_channel(clarion, channel, _sender(clarion, channel, providers[channel]))
    _register_status(clarion)

    @clarion.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_providers(_sender: Any, *_: Any, signal: Any, **__: Any) -> None:  # noqa: ARG001
        await asyncio.gather(*(provider.close() for provider in providers.values()))


def _slot(clarion: Clarion, channel: str, provider: Provider) -> ProviderSlot:
    tuning = clarion.settings.delivery
    limit = tuning.rate_limit(channel)
    return ProviderSlot(
        provider=provider,
        bucket=TokenBucket(limit.rate, limit.burst),
        breaker=CircuitBreaker(
            failure_threshold=tuning.breaker_failures, cooldown=tuning.breaker_cooldown
        ),
    )


def _sender(clarion: Clarion, channel: str, provider: Provider) -> ChannelSender:
    settings = clarion.settings
    fallback = None
    if channel == "email" and settings.delivery.smtp_fallback is not None:
        fallback = _slot(clarion, channel, SmtpProvider(settings.delivery.smtp_fallback))
    return ChannelSender(
        channel=channel,
        primary=_slot(clarion, channel, provider),
        fallback=fallback,
        writer=clarion.writer,
        max_attempts=settings.max_attempts,
        retry_backoff=settings.retry_backoff,
        clock=clarion.clock,
        forget_address=_forget_push_token(clarion) if channel == "push" else None,
        metrics=clarion.metrics,
    )


def _forget_push_token(clarion: Clarion) -> ForgetAddress:
    """A preferences update without the dead token, published like any producer's update."""
    store = clarion.preferences
    topic = clarion.topics.preferences

    def forget(delivery: dict[str, Any], token: str) -> OutRecord | None:
        user_id = delivery["user_id"]
        if not store.holds(user_id):
            # Another worker routes this user: it holds the preferences to rewrite.
            logger.warning("push token of %r not removed: preferences held elsewhere", user_id)
            return None
        current = store.get(user_id)
        if current is None or current.addresses is None:
            return None
        tokens = list(current.addresses.push_tokens or ())
        if token not in tokens:
            return None
        value = current.asdict()
        value["addresses"] = {
            **current.addresses.asdict(),
            "push_tokens": [t for t in tokens if t != token],
        }
        key = user_id.encode()
        partition = partition_for_key(key, clarion.settings.partitions)
        return OutRecord(topic, partition, key, orjson.dumps(value, default=encode_records))

    return forget


async def start_publishing(app: faust.App, records: Iterable[OutRecord]) -> list[Awaitable[Any]]:
    """Hand records to the producer; the futures resolve once the broker has them."""
    return [
        await app.producer.send(r.topic, r.key, r.value, r.partition, None, None) for r in records
    ]


async def publish(app: faust.App, records: Iterable[OutRecord]) -> None:
    """Send and wait until the broker has them all: only then may the input be acknowledged."""
    await asyncio.gather(*await start_publishing(app, records))


def _register_channel(clarion: Clarion, channel: str, sender: ChannelSender) -> None:
    app = clarion.app
    topic = app.topic(clarion.topics.deliver(channel), key_serializer="raw", value_serializer="raw")
    # Provider round trips and rate-limit waits included: the time the record holds a slot.
    observe_processing = clarion.metrics.agent_timer(f"clarion.deliver.{channel}")

    @app.agent(
        topic, name=f"clarion.deliver.{channel}", concurrency=clarion.settings.delivery.concurrency
    )
    async def deliver(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            message = event.message
            started = time.perf_counter()
            announced: list[Awaitable[Any]] = []

            async def announce(sending: OutRecord) -> None:
                announced.extend(await start_publishing(app, [sending]))  # noqa: B023

            try:
                delivery = orjson.loads(message.value)
                records = await sender.attempt(delivery, message.partition, announce)
            except Exception as exc:
                # Undecodable or a bug: park it where an operator will look, never drop it.
                logger.exception(
                    "delivery %s[%d]@%d failed", topic, message.partition, message.offset
                )
                records = [unprocessable(clarion, message, exc)]
            observe_processing(time.perf_counter() - started)
            await publish(app, records)
            await asyncio.gather(*announced)


def unprocessable(clarion: Clarion, message: Any, exc: Exception) -> OutRecord:
    return clarion.writer.invalid(
        raw=message.value,
        key=message.key,
        error=f"could not deliver: {exc!r}",
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        at=utc_iso(clarion.clock()),
    )


def _register_status(clarion: Clarion) -> None:
    app = clarion.app
    table = clarion.status_table
    topic = app.topic(clarion.topics.status, key_serializer="raw", value_serializer="raw")
    observe_processing = clarion.metrics.agent_timer("clarion.status")

    @app.agent(topic, name="clarion.status")
    async def record(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            started = time.perf_counter()
            try:
                change = orjson.loads(event.message.value)
                notification_id = change["notification_id"]
                history = table.get(notification_id)
                updated = append_status(history, change)
                if updated is not history:
                    table[notification_id] = updated
            except Exception:
                # The audit log is written by Clarion itself; a bad record is a bug to see.
                logger.exception(
                    "status record %d@%d ignored", event.message.partition, event.message.offset
                )
            observe_processing(time.perf_counter() - started)
