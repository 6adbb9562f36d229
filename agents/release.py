"""The partition-local sweep: release held events and close digest windows that are due.

Runs on a timer over the partitions this worker owns and whose timers are recovered. Its
records join the partition's pending transaction in the outbox, so a release and the deletion
of its row commit together: a crash before the commit leaves the row to be released again by
whoever owns the partition next; a crash after it cannot release the row a second time.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents.dispatch import Arrival, Dispatcher, iso_from_millis, millis
from agents.records_out import utc_iso
from agents.routing.channels import Target, notification_id, resolve_channels
from agents.routing.decide import QUIET_REASON
from agents.routing.render import TemplateError
from agents.routing.schedule import quiet_until
from agents.telemetry import Telemetry
from schemas.records import NotificationEvent, UserPreferences
from schemas.structs import OutRecord
from schemas.timestamps import parse_timestamp
from tables.preferences import PreferencesLookup, quiet_hours_of
from tables.timers import (
    DIGEST,
    HELD,
    RETRY,
    DueRow,
    TimerTable,
    held_key,
    item_prefix,
    user_prefix,
)
from tables.user_notifications import NOTIFICATION

logger = logging.getLogger(__name__)

DIGEST_TEMPLATE = "digest"
# A digest lists its first events in full and counts the rest, each line's text cut short, so
# that a user who had thousands of events in a window still gets a digest of bounded size.
DIGEST_LISTED = 50
DIGEST_LINE_CHARS = 300
# At most this many events per digest record (its event_ids, the statuses and the status
# history that repeat them): a window holding more closes as several digests.
DIGEST_MAX_EVENTS = 500
_RETRY_BROKEN_ROW_MS = 60_000
_RELEASE_KINDS = {HELD: "held", DIGEST: "digest", RETRY: "retry"}


@dataclass(kw_only=True)
class Sweeper:
    dispatcher: Dispatcher
    timers: TimerTable
    preferences: PreferencesLookup
    clock: Callable[[], datetime]
    batch_limit: int = 1000
    metrics: Telemetry | None = None
    # Users whose preferences changed: their held rows are looked at again on the next sweep,
    # so removing quiet hours releases at once instead of at the old due time.
    _touched: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))

    def touch(self, partition: int, user_id: str) -> None:
        self._touched[partition].add(user_id)

    def sweep(self, partition: int) -> list[OutRecord]:
        """Records releasing what is due in ``partition``, already staged in the table."""
        now = self.clock()
        out: list[OutRecord] = []
        for user_id in self._touched.pop(partition, set()):
            out.extend(self._recheck(partition, user_id, now))
        for row in self.timers.due(partition, millis(now), self.batch_limit):
            out.extend(self._staged(partition, row, now))
        return out

    def _staged(self, partition: int, row: DueRow, now: datetime) -> list[OutRecord]:
        # Staged row by row: the next row of the same user must see this one's writes.
        released = True
        try:
            records = self._release(partition, row, now)
        except Exception:
            # A bug must neither lose the row nor spin on it: look again in a minute.
            logger.exception("releasing timer row %r failed; retrying in a minute", row.key)
            retry_at = {**row.value, "due": millis(now) + _RETRY_BROKEN_ROW_MS}
            records = [self.timers.put(partition, row.key, retry_at)]
            released = False
        self.timers.stage(partition, records)
        if released and self.metrics is not None:
            self._count_release(partition, row)
        return records

    def _count_release(self, partition: int, row: DueRow) -> None:
        """Count a row the sweep let go of: gone once its records are staged.

        A held event held again (quiet hours, a cap) or a digest postponed by quiet hours keeps
        its row and is not counted. Counted before the outbox commits, like every metric.
        """
        kind = _RELEASE_KINDS.get(row.kind)
        if kind is None or self.metrics is None:
            return
        if self.timers.get(partition, row.key) is None:
            self.metrics.released(kind)

    def _release(self, partition: int, row: DueRow, now: datetime) -> list[OutRecord]:
        if row.kind == HELD:
            return self._release_held(partition, row.value, now)
        if row.kind == DIGEST:
            return self._close_digest(partition, row.key, row.value, now)
        if row.kind == RETRY:
            # Back to its channel: the delivery agent makes the next attempt.
            delivery = row.value["delivery"]
            return [
                self.dispatcher.writer.delivery(delivery, partition=partition),
                self.timers.delete(partition, row.key),
            ]
        if row.kind == NOTIFICATION:
            # Past its retention in the user's notification list.
            return [self.timers.delete(partition, row.key)]
        logger.error("unknown timer row kind %r; leaving it", row.kind)
        return []

    def _recheck(self, partition: int, user_id: str, now: datetime) -> list[OutRecord]:
        """Release what only quiet hours held back, in case the user's new preferences allow."""
        out: list[OutRecord] = []
        now_ms = millis(now)
        rows = [
            *self.timers.rows(partition, user_prefix(HELD, user_id)),
            *self.timers.rows(partition, user_prefix(DIGEST, user_id)),
        ]
        for key, value in rows:
            held_for_quiet = str(value.get("reason", "")).startswith(QUIET_REASON)
            # A digest window that has closed waits only for quiet hours.
            closed_digest = key[:1] == DIGEST and value["end"] <= now_ms
            if value["due"] > now_ms and (held_for_quiet or closed_digest):
                out.extend(self._staged(partition, DueRow(key=key, kind=key[:1], value=value), now))
        return out

    def _release_held(
        self, partition: int, value: dict[str, Any], now: datetime
    ) -> list[OutRecord]:
        event = NotificationEvent.from_data(value["event"])
        channels = value.get("channels")
        arrival = Arrival(
            partition=partition,
            sequence=int(value["sequence"]),
            arrived_ms=int(value["arrived"]),
            only_channels=tuple(channels) if channels is not None else None,
            held=True,
        )
        try:
            return self.dispatcher.dispatch(event, arrival, now)
        except TemplateError as exc:
            # Templates can change while an event waits; it cannot be sent, so say why.
            at = utc_iso(now)
            return [
                self.dispatcher.event_status(event, "failed", at, f"could not render: {exc}"),
                self.timers.delete(partition, held_key(event.user_id, event.event_id)),
            ]

    def _close_digest(
        self, partition: int, key: bytes, header: dict[str, Any], now: datetime
    ) -> list[OutRecord]:
        user_id = header["user_id"]
        preferences = self.preferences.get(user_id)
        quiet = quiet_hours_of(preferences)
        quiet_end = quiet_until(now, quiet) if quiet is not None else None
        if quiet_end is not None:
            return [self.timers.put(partition, key, {**header, "due": millis(quiet_end)})]
        at = utc_iso(now)
        items = list(self.timers.rows(partition, item_prefix(user_id, header["start"])))
        out = [self.timers.delete(partition, item_key) for item_key, _ in items]
        out.append(self.timers.delete(partition, key))
        groups: dict[Target, list[NotificationEvent]] = defaultdict(list)
        dispatcher = self.dispatcher
        for _, item in items:
            event = NotificationEvent.from_data(item["event"])
            expires = parse_timestamp(event.expires_at) if event.expires_at else None
            if expires is not None and expires <= now:
                out.append(dispatcher.event_status(event, "expired", at, "expired in a digest"))
                continue
            wanted = set(item["channels"])
            targets = [
                t for t in resolve_channels(event, preferences).targets if t.channel in wanted
            ]
            if not targets:
                reason = "no deliverable channel left when the digest closed"
                out.append(dispatcher.event_status(event, "suppressed", at, reason))
            for target in targets:
                groups[target].append(event)
        for target, events in groups.items():
            for part in range(0, len(events), DIGEST_MAX_EVENTS):
                out.extend(
                    self._digest_delivery(
                        partition=partition,
                        header=header,
                        target=target,
                        events=events[part : part + DIGEST_MAX_EVENTS],
                        part=part // DIGEST_MAX_EVENTS,
                        preferences=preferences,
                        now=now,
                    )
                )
        return out

    def _digest_delivery(
        self,
        *,
        partition: int,
        header: dict[str, Any],
        target: Target,
        events: list[NotificationEvent],
        part: int,
        preferences: UserPreferences | None,
        now: datetime,
    ) -> list[OutRecord]:
        at = utc_iso(now)
        user_id = header["user_id"]
        # The first part keeps the id a digest has always had; later parts are numbered.
        window = f"digest:{header['start']}" + (f":{part}" if part else "")
        digest_id = notification_id(user_id, window, target.channel, target.address)
        locale = preferences.locale if preferences else None
        lines = [self._summary(event, target.channel, locale) for event in events[:DIGEST_LISTED]]
        rendered = self.dispatcher.renderer.render(
            _digest_event(digest_id, user_id, header, lines, events), target.channel, locale
        )
        event_ids = [event.event_id for event in events]
        delivery = {
            "notification_id": digest_id,
            "user_id": user_id,
            "channel": target.channel,
            "address": target.address,
            "subject": rendered.subject,
            "body": rendered.body,
            "html": rendered.html,
            "event_ids": event_ids,
            "priority": "low",
            "category": "digest",
            "created_at": at,
            "locale": locale,
            "tenant_id": None,
            "attempt": 1,
            "not_before": None,
            # A digest outlives its events' expiries: it says what happened, late or not.
            "expires_at": None,
        }
        writer = self.dispatcher.writer
        out = self.dispatcher.emit(delivery, partition, now, f"digest of {len(event_ids)}")
        if self.metrics is not None:
            self.metrics.digest(target.channel, len(event_ids))
        out.extend(
            writer.status(
                notification_id=event.event_id,
                status="digested",
                at=at,
                event_ids=[event.event_id],
                user_id=user_id,
                channel=target.channel,
                reason=f"in digest {digest_id}",
            )
            for event in events
        )
        return out

    def _summary(
        self, event: NotificationEvent, channel: str, locale: str | None
    ) -> dict[str, Any]:
        """One digest line: the event rendered for the channel, or its title if that fails."""
        subject: str | None
        body: str | None
        try:
            rendered = self.dispatcher.renderer.render(event, channel, locale)
            subject, body = rendered.subject, rendered.body
        except TemplateError:
            subject, body = event.title, event.body
        return {
            "event_id": event.event_id,
            "category": event.category,
            "subject": _shortened(subject),
            "title": _shortened(event.title),
            "body": _shortened(body),
            "created_at": event.created_at,
        }


def _shortened(text: str | None) -> str | None:
    if text is None or len(text) <= DIGEST_LINE_CHARS:
        return text
    return text[: DIGEST_LINE_CHARS - 1] + "\u2026"


def _digest_event(
    digest_id: str,
    user_id: str,
    header: dict[str, Any],
    lines: list[dict[str, Any]],
    events: list[NotificationEvent],
) -> NotificationEvent:
    """The digest template's data: ``lines`` listed, every one of ``events`` counted."""
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in lines:
        by_category[line["category"]].append(line)
    counts = Counter(event.category for event in events)
    return NotificationEvent(
        event_id=digest_id,
        user_id=user_id,
        category="digest",
        priority="low",
        template=DIGEST_TEMPLATE,
        data={
            "count": len(events),
            "events": lines,
            "more": len(events) - len(lines),
            "categories": [
                {"name": name, "count": count, "events": by_category.get(name, [])}
                for name, count in counts.items()
            ],
            "window_start": iso_from_millis(header["start"]),
            "window_end": iso_from_millis(header["end"]),
        },
    )
