"""The delivery side: the external channels' providers, on the delivery runtime.

* ``clarion.deliver.<email|sms|push|webhook>``: :class:`ChannelSender` per delivery, several in
  flight per worker, on a consumer of their own (pipeline/runtime/delivery.py), not Faust's:
  Faust committed these transactional topics late, and a rebalance sent hundreds again. Their
  records are acknowledged by the broker before the delivery's offset can be committed:
  a crash repeats the attempt (same notification id, so the provider's idempotency key
  recognises it) rather than losing it; a rebalance or a clean stop repeats nothing.
* ``clarion.deliver.in_app`` is stored in the user's inbox by the store runtime
  (pipeline/runtime/store.py), as ``clarion.status`` is kept in each notification's history.
* ``clarion.retry``: read by the route runtime (agents/retry.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from agents.delivery.attempt import ChannelSender, ForgetAddress, ProviderSlot
from agents.delivery.breaker import CircuitBreaker
from agents.delivery.providers import build_providers
from agents.delivery.providers.base import Provider
from agents.delivery.providers.smtp import SmtpProvider
from agents.delivery.ratelimit import TokenBucket
from agents.invalid import invalid_delivery
from agents.records_out import encode_records
from pipeline.runtime.delivery import DeliveryRuntime
from pipeline.runtime.service import run_with
from schemas.partitioner import partition_for_key
from schemas.structs import OutRecord

if TYPE_CHECKING:
    from pipeline.app import Clarion

logger = logging.getLogger(__name__)

EXTERNAL_CHANNELS = ("email", "sms", "push", "webhook")


def register_delivery(clarion: Clarion, channels: Iterable[str] = EXTERNAL_CHANNELS) -> None:
    """The delivery side for ``channels`` (external ones)."""
    providers = build_providers(clarion.settings.providers)
    runtime = DeliveryRuntime(
        settings=clarion.settings,
        topics=clarion.topics,
        senders={channel: _sender(clarion, channel, providers[channel]) for channel in channels},
        unprocessable=functools.partial(invalid_delivery, clarion.writer, clarion.clock),
        metrics=clarion.metrics,
    )
    run_with(clarion.app, runtime, "delivery runtime")

    @clarion.app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def close_providers(_sender: Any, *_: Any, signal: Any, **__: Any) -> None:  # noqa: ARG001
        # Not under deliveries still in flight: they finish (or time out) first.
        await runtime.stop()
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
