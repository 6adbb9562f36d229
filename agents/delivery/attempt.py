"""One delivery attempt through a channel's provider, and what it leaves behind.

:meth:`ChannelSender.attempt` sends one Delivery (a dict) and returns the records to publish:
statuses, a retry (the Delivery again with the next attempt and ``not_before``), a dead
letter, or a preferences update forgetting an address the provider says is dead. It never
sleeps for a retry: the retry topic and the durable timers do the waiting.

Waiting for an open circuit is not an attempt: the Delivery comes back after the cool-down
with the same attempt number, so an outage longer than the retry budget does not send
deliveries that were never tried to the DLQ.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agents.delivery.backoff import (
    MIN_DELAY,
    dead_letter_fields,
    next_attempt_at,
    record_error,
    should_dead_letter,
)
from agents.delivery.breaker import CircuitBreaker
from agents.delivery.providers.base import (
    DeliveryError,
    InvalidAddressError,
    PermanentDeliveryError,
    Provider,
    TransientDeliveryError,
    UnregisteredTokenError,
)
from agents.delivery.ratelimit import TokenBucket
from agents.records_out import OutputWriter, utc_iso
from agents.telemetry import (
    CIRCUIT_OPEN,
    NO_PROVIDER,
    PERMANENT_ERROR,
    SENT,
    TRANSIENT_ERROR,
    Telemetry,
)
from schemas.clock import Clock
from schemas.structs import OutRecord
from schemas.timestamps import parse_timestamp

logger = logging.getLogger(__name__)

# Forget a dead address: the preferences record to publish, or None when there is none.
ForgetAddress = Callable[[dict[str, Any], str], OutRecord | None]
# Publish the ``sending`` status before the provider is called, so a crash mid-send leaves
# a trace; awaited only until the record is handed to the producer.
Announce = Callable[[OutRecord], Awaitable[None]]


@dataclass(kw_only=True)
class ProviderSlot:
    """A provider with its own rate limit and circuit breaker."""

    provider: Provider
    bucket: TokenBucket
    breaker: CircuitBreaker


@dataclass(kw_only=True)
class ChannelSender:
    channel: str
    primary: ProviderSlot
    fallback: ProviderSlot | None
    writer: OutputWriter
    max_attempts: int
    retry_backoff: float
    clock: Clock
    forget_address: ForgetAddress | None = None
    rng: random.Random = field(default_factory=random.Random)
    metrics: Telemetry | None = None

    async def attempt(
        self, delivery: dict[str, Any], partition: int, announce: Announce | None = None
    ) -> list[OutRecord]:
        expires_at = parse_timestamp(delivery.get("expires_at") or "")
        if expires_at is not None and self.clock() >= expires_at:
            reason = f"expired at {delivery['expires_at']} before delivery"
            return [self._status(delivery, "expired", reason)]
        slot = self._choose_slot()
        if slot is None:
            return self._wait_for_provider(delivery, partition)
        await slot.bucket.acquire()
        if announce is not None:
            attempt = delivery.get("attempt") or 1
            await announce(self._status(delivery, "sending", f"attempt {attempt}"))
        try:
            result = await slot.provider.send(delivery)
        except DeliveryError as failure:
            return self._on_failure(slot, delivery, partition, failure)
        except Exception as exc:
            # A provider bug must not lose the delivery: count it as transient and retry.
            logger.exception(
                "provider %s crashed on %s", slot.provider.name, delivery["notification_id"]
            )
            crash = TransientDeliveryError(f"internal error in {slot.provider.name}: {exc!r}")
            return self._on_failure(slot, delivery, partition, crash)
        slot.breaker.record_success()
        slot.bucket.on_success()
        if self.metrics is not None:
            self.metrics.delivery(self.channel, slot.provider.name, SENT)
            created_at, priority = delivery.get("created_at"), delivery.get("priority")
            self.metrics.sent(self.channel, priority, created_at, self.clock())
        via = slot.provider.name
        if result.provider_message_id:
            via = f"{via} id {result.provider_message_id}"
        return [self._status(delivery, "sent", f"via {via}")]

    def _slots(self) -> list[ProviderSlot]:
        return [self.primary] if self.fallback is None else [self.primary, self.fallback]

    def _choose_slot(self) -> ProviderSlot | None:
        for slot in self._slots():
            if slot.breaker.allow():
                return slot
        return None

    def _wait_for_provider(self, delivery: dict[str, Any], partition: int) -> list[OutRecord]:
        """Every provider's breaker is open: do not knock, come back when one may close."""
        if self.metrics is not None:
            self.metrics.delivery(self.channel, NO_PROVIDER, CIRCUIT_OPEN)
        wait = max(MIN_DELAY, min(slot.breaker.retry_in() for slot in self._slots()))
        # Spread over a tenth of the wait: only one probe gets through a half-open breaker.
        retry_at = self.clock() + timedelta(seconds=wait * self.rng.uniform(1.0, 1.1))
        retry = {**delivery, "not_before": utc_iso(retry_at)}
        reason = (
            f"{self.channel} provider unavailable (circuit open); "
            f"attempt {delivery.get('attempt') or 1} waits until {retry['not_before']}"
        )
        return [
            self.writer.retry(retry, partition=partition),
            self._status(delivery, "retrying", reason),
        ]

    def _on_failure(
        self,
        slot: ProviderSlot,
        delivery: dict[str, Any],
        partition: int,
        failure: DeliveryError,
    ) -> list[OutRecord]:
        if self.metrics is not None:
            permanent = isinstance(failure, PermanentDeliveryError)
            outcome = PERMANENT_ERROR if permanent else TRANSIENT_ERROR
            self.metrics.delivery(self.channel, slot.provider.name, outcome)
        retry_after = None
        if isinstance(failure, TransientDeliveryError):
            slot.breaker.record_failure()
            retry_after = failure.retry_after
            if failure.status == 429:
                slot.bucket.slow_down(retry_after)
        out = self._failed(delivery, partition, failure, retry_after=retry_after)
        if isinstance(failure, UnregisteredTokenError) and self.forget_address is not None:
            forget = self.forget_address(delivery, failure.address)
            if forget is not None:
                out.append(forget)
        return out

    def _failed(
        self,
        delivery: dict[str, Any],
        partition: int,
        failure: DeliveryError,
        *,
        retry_after: float | None,
    ) -> list[OutRecord]:
        now = self.clock()
        at = utc_iso(now)
        attempt = int(delivery.get("attempt") or 1)
        transient = not isinstance(failure, PermanentDeliveryError)
        errors = record_error(
            delivery.get("errors"),
            attempt=attempt,
            at=at,
            error=failure.reason,
            transient=transient,
        )
        if transient and not should_dead_letter(attempt, self.max_attempts):
            retry_at = next_attempt_at(
                now, attempt, base=self.retry_backoff, retry_after=retry_after, rng=self.rng
            )
            retry = {
                **delivery,
                "attempt": attempt + 1,
                "not_before": utc_iso(retry_at),
                "errors": errors,
            }
            reason = (
                f"attempt {attempt} failed ({failure.reason}); retrying at {retry['not_before']}"
            )
            return [
                self.writer.retry(retry, partition=partition),
                self._status(delivery, "retrying", reason),
            ]
        letter = {**delivery, **dead_letter_fields(errors)}
        status = "dead_lettered" if transient else "failed"
        if isinstance(failure, InvalidAddressError):
            reason = f"invalid address {failure.address!r}: {failure.reason}"
        elif transient:
            reason = f"gave up after {attempt} attempts: {failure.reason}"
        else:
            reason = f"permanent failure: {failure.reason}"
        return [
            self.writer.dead_letter(letter, partition=partition),
            self._status(delivery, status, reason),
        ]

    def _status(self, delivery: dict[str, Any], status: str, reason: str | None) -> OutRecord:
        return self.writer.status(
            notification_id=delivery["notification_id"],
            status=status,
            at=utc_iso(self.clock()),
            event_ids=list(delivery.get("event_ids") or ()),
            user_id=delivery.get("user_id"),
            channel=self.channel,
            reason=reason,
        )
