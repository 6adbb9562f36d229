"""Carry out a routing :class:`~agents.routing.decide.Plan`: the records and timer rows it means.

Used on arrival (by the ingest agent) and on release (by the sweep), so an event held for hours
goes out exactly as it would have if it had arrived at that moment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.records_out import OutputWriter, utc_iso
from agents.routing.channels import Target, notification_id, suppression_reason
from agents.routing.decide import CAP_PERIOD, Plan, cap_for, decide
from agents.routing.render import Rendered, TemplateRenderer
from agents.routing.schedule import digest_window
from schemas.records import NotificationEvent, UserPreferences
from schemas.structs import OutRecord
from schemas.timestamps import parse_timestamp
from tables.preferences import PreferencesLookup
from tables.timers import TimerTable, digest_key, held_key, item_key, sent_key
from tables.user_notifications import notification_key, notification_row


@dataclass(frozen=True, kw_only=True, slots=True)
class Arrival:
    """Where an event is in its life: its partition, order of arrival, and held row if any."""

    partition: int
    sequence: int
    arrived_ms: int
    only_channels: tuple[str, ...] | None = None
    held: bool = False


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def iso_from_millis(stored: int) -> str:
    """A stored millisecond instant as the RFC 3339 text records carry."""
    return utc_iso(datetime.fromtimestamp(stored / 1000, UTC))


@dataclass(kw_only=True, slots=True)
class Dispatcher:
    writer: OutputWriter
    renderer: TemplateRenderer
    timers: TimerTable
    preferences: PreferencesLookup
    default_caps: Mapping[str, int]
    digest_window_seconds: float
    notification_retention_ms: int = 30 * 86_400_000

    def dispatch(
        self, event: NotificationEvent, arrival: Arrival, now: datetime
    ) -> list[OutRecord]:
        """Records for ``event`` at ``now``: deliveries, statuses and timer changes.

        Raises :class:`~agents.routing.render.TemplateError` before writing anything when the
        event cannot be rendered, so the caller can reject it whole.
        """
        partition = arrival.partition
        preferences = self.preferences.get(event.user_id)
        plan = decide(
            event,
            preferences,
            now=now,
            sent_last_hour=lambda channel: self._recent_sends(partition, event.user_id, channel),
            default_caps=self.default_caps,
            only_channels=arrival.only_channels,
        )
        at = utc_iso(now)
        locale = event.locale or (preferences.locale if preferences else None)
        # Render first: a template error must reject the event before any row is written.
        deliveries = [self._delivery(event, target, locale, at) for target in plan.send_now]
        out: list[OutRecord] = []
        if plan.expired or plan.suppressed:
            reason = plan.reason
            if plan.resolution is not None and not plan.resolution.targets:
                reason = suppression_reason(plan.resolution)
            status = "expired" if plan.expired else "suppressed"
            out.append(self.event_status(event, status, at, reason))
        for delivery in deliveries:
            out.extend(self.emit(delivery, partition, now))
        out.extend(self._count_sends(partition, event.user_id, plan, preferences, now))
        if plan.digest:
            out.extend(
                self._add_to_digest(
                    event=event,
                    arrival=arrival,
                    channels=plan.digest,
                    preferences=preferences,
                    now=now,
                    at=at,
                )
            )
        key = held_key(event.user_id, event.event_id)
        if plan.hold_until is not None:
            out.extend(self._hold(event, arrival, plan, at))
        elif arrival.held:
            out.append(self.timers.delete(partition, key))
        if not arrival.held and plan.resolution is not None:
            out.extend(self._requested_but_suppressed(event, plan, at))
        return out

    def event_status(
        self, event: NotificationEvent, status: str, at: str, reason: str | None = None
    ) -> OutRecord:
        return self.writer.status(
            notification_id=event.event_id,
            status=status,
            at=at,
            event_ids=[event.event_id],
            user_id=event.user_id,
            reason=reason,
        )

    def _delivery(
        self, event: NotificationEvent, target: Target, locale: str | None, at: str
    ) -> dict[str, Any]:
        rendered: Rendered = self.renderer.render(event, target.channel, locale)
        return {
            "notification_id": notification_id(
                event.user_id, event.event_id, target.channel, target.address
            ),
            "user_id": event.user_id,
            "channel": target.channel,
            "address": target.address,
            "subject": rendered.subject,
            "body": rendered.body,
            "html": rendered.html,
            "event_ids": [event.event_id],
            "priority": event.priority,
            "category": event.category,
            "created_at": event.created_at or at,
            "locale": locale,
            "tenant_id": event.tenant_id,
            "attempt": 1,
            "not_before": None,
            "expires_at": event.expires_at,
        }

    def emit(
        self, delivery: dict[str, Any], partition: int, now: datetime, reason: str | None = None
    ) -> list[OutRecord]:
        """A new Delivery on its channel, its ``queued`` status and its row in the user's list."""
        created_ms = millis(now)
        row = notification_row(
            delivery, created_ms=created_ms, retention_ms=self.notification_retention_ms
        )
        key = notification_key(delivery["user_id"], created_ms, delivery["notification_id"])
        return [
            self.writer.delivery(delivery, partition=partition),
            self.writer.status(
                notification_id=delivery["notification_id"],
                status="queued",
                at=utc_iso(now),
                event_ids=delivery["event_ids"],
                user_id=delivery["user_id"],
                channel=delivery["channel"],
                reason=reason,
            ),
            self.timers.put(partition, key, row),
        ]

    def _hold(
        self, event: NotificationEvent, arrival: Arrival, plan: Plan, at: str
    ) -> list[OutRecord]:
        assert plan.hold_until is not None
        release = plan.hold_until
        expires = event.expires_at
        # An event that expires while held comes due at its expiry, to be reported expired.
        due = millis(release)
        expires_at = parse_timestamp(expires) if expires else None
        if expires_at is not None:
            due = min(due, millis(expires_at))
        row = {
            "due": due,
            "event": event.asdict(),
            "channels": list(plan.hold_channels) if plan.hold_channels is not None else None,
            "sequence": arrival.sequence,
            "arrived": arrival.arrived_ms,
            "reason": plan.reason,
        }
        key = held_key(event.user_id, event.event_id)
        return [
            self.timers.put(arrival.partition, key, row),
            self.event_status(event, "deferred", at, f"held: {plan.reason}"),
        ]

    def _add_to_digest(
        self,
        *,
        event: NotificationEvent,
        arrival: Arrival,
        channels: tuple[str, ...],
        preferences: UserPreferences | None,
        now: datetime,
        at: str,
    ) -> list[OutRecord]:
        partition, user_id = arrival.partition, event.user_id
        timezone = (preferences.timezone if preferences else None) or "UTC"
        start, end = digest_window(now, timezone, self.digest_window_seconds)
        start_ms = millis(start)
        out: list[OutRecord] = []
        header = digest_key(user_id, start_ms)
        if self.timers.get(partition, header) is None:
            row = {"due": millis(end), "user_id": user_id, "start": start_ms, "end": millis(end)}
            out.append(self.timers.put(partition, header, row))
        item = {"event": event.asdict(), "channels": list(channels), "arrived": arrival.arrived_ms}
        key = item_key(user_id, start_ms, arrival.arrived_ms, arrival.sequence)
        out.append(self.timers.put(partition, key, item))
        out.append(
            self.event_status(
                event, "deferred", at, f"batched into the digest closing at {utc_iso(end)}"
            )
        )
        return out

    def _recent_sends(self, partition: int, user_id: str, channel: str) -> list[float]:
        row = self.timers.get(partition, sent_key(user_id, channel))
        return [] if row is None else list(row["at"])

    def _count_sends(
        self,
        partition: int,
        user_id: str,
        plan: Plan,
        preferences: UserPreferences | None,
        now: datetime,
    ) -> list[OutRecord]:
        """Remember individual sends on capped channels; critical ones do not count."""
        if not plan.send_now or plan.resolution is None:
            return []
        out: list[OutRecord] = []
        horizon = (now - CAP_PERIOD).timestamp()
        for channel in dict.fromkeys(t.channel for t in plan.send_now):
            cap = cap_for(channel, preferences, self.default_caps)
            if cap <= 0 or plan.critical:
                continue
            recent = [at for at in self._recent_sends(partition, user_id, channel) if at > horizon]
            recent = [*recent, now.timestamp()][-cap:]
            out.append(self.timers.put(partition, sent_key(user_id, channel), {"at": recent}))
        return out

    def _requested_but_suppressed(
        self, event: NotificationEvent, plan: Plan, at: str
    ) -> list[OutRecord]:
        """Channels the producer asked for by name and did not get deserve a trace."""
        assert plan.resolution is not None
        if not event.channels or not plan.resolution.targets:
            return []
        return [
            self.writer.status(
                notification_id=notification_id(event.user_id, event.event_id, channel, ""),
                status="suppressed",
                at=at,
                event_ids=[event.event_id],
                user_id=event.user_id,
                channel=channel,
                reason=reason,
            )
            for channel, reason in plan.resolution.suppressed.items()
            if channel in event.channels
        ]
