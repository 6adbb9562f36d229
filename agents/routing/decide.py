"""When and how an event goes out (contract, routing rules 2-5), as a pure function.

:func:`decide` sees the event, the user's preferences as they are now, the current instant and
how many individual notifications each channel sent in the last hour; it returns a
:class:`Plan`. It is called when an event arrives and again each time a held event comes due,
so a preference change while an event waits is honoured when it is released.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agents.routing.channels import ChannelResolution, Target, resolve_channels
from agents.routing.schedule import quiet_until
from schemas.records import NotificationEvent, UserPreferences
from schemas.timestamps import parse_timestamp
from tables.preferences import quiet_hours_of

CAP_PERIOD = timedelta(hours=1)
QUIET_REASON = "quiet hours"


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with an event now.

    ``expired``/``suppressed`` carry ``reason``; otherwise ``send_now`` goes out at once,
    ``digest`` (channels) joins the user's current digest window and ``hold_channels`` waits
    until ``hold_until`` (then :func:`decide` runs again for those channels).
    """

    resolution: ChannelResolution | None = None
    expired: bool = False
    reason: str | None = None
    send_now: tuple[Target, ...] = ()
    digest: tuple[str, ...] = ()
    hold_until: datetime | None = None
    hold_channels: tuple[str, ...] | None = None
    capped: tuple[str, ...] = field(default=())
    critical: bool = False

    @property
    def suppressed(self) -> bool:
        return self.reason is not None and not self.expired and self.hold_until is None


def decide(  # noqa: PLR0911 - one return per routing rule reads best
    event: NotificationEvent,
    preferences: UserPreferences | None,
    *,
    now: datetime,
    sent_last_hour: Callable[[str], Collection[float]],
    default_caps: Mapping[str, int],
    only_channels: Collection[str] | None = None,
) -> Plan:
    """``sent_last_hour(channel)`` gives the epoch seconds of that channel's recent sends."""
    expires = _instant(event.expires_at)
    if expires is not None and expires <= now:
        return Plan(expired=True, reason=f"expired at {event.expires_at} before delivery")
    send_at = _instant(event.send_at)
    if send_at is not None and send_at > now:
        return Plan(
            hold_until=send_at,
            hold_channels=_tuple_or_none(only_channels),
            reason=f"scheduled for {event.send_at}",
        )
    resolution = resolve_channels(event, preferences)
    targets = [t for t in resolution.targets if only_channels is None or t.channel in only_channels]
    if not targets:
        return Plan(resolution=resolution, reason="no deliverable channel")
    if event.priority == "critical":
        return Plan(resolution=resolution, send_now=tuple(targets), critical=True)

    digest_enabled = _digest_enabled(preferences)
    channels = tuple(dict.fromkeys(t.channel for t in targets))
    if event.priority == "low" and digest_enabled:
        return Plan(resolution=resolution, digest=channels)

    quiet = quiet_hours_of(preferences)
    quiet_end = quiet_until(now, quiet) if quiet is not None else None
    if quiet_end is not None:
        return Plan(
            resolution=resolution,
            hold_until=quiet_end,
            hold_channels=channels,
            reason=f"{QUIET_REASON} until {quiet_end.isoformat()}",
        )

    capped, free_at = _over_cap(channels, preferences, default_caps, now, sent_last_hour)
    send_now = tuple(t for t in targets if t.channel not in capped)
    if not capped:
        return Plan(resolution=resolution, send_now=send_now)
    if digest_enabled:
        return Plan(resolution=resolution, send_now=send_now, digest=capped, capped=capped)
    # No digest to fall back on: wait for a slot rather than drop the notification.
    return Plan(
        resolution=resolution,
        send_now=send_now,
        hold_until=free_at,
        hold_channels=capped,
        capped=capped,
        reason=f"frequency cap reached on {', '.join(capped)}",
    )


def cap_for(channel: str, preferences: UserPreferences | None, defaults: Mapping[str, int]) -> int:
    """The hourly cap of a channel; 0 means none."""
    caps = (preferences.caps if preferences else None) or {}
    return caps.get(channel, defaults.get(channel, 0))


def _over_cap(
    channels: tuple[str, ...],
    preferences: UserPreferences | None,
    defaults: Mapping[str, int],
    now: datetime,
    sent_last_hour: Callable[[str], Collection[float]],
) -> tuple[tuple[str, ...], datetime]:
    """The channels at their cap, and when the earliest of them frees a slot."""
    capped: list[str] = []
    free_at = now + CAP_PERIOD
    horizon = (now - CAP_PERIOD).timestamp()
    for channel in channels:
        cap = cap_for(channel, preferences, defaults)
        if cap <= 0:
            continue
        recent = sorted(at for at in sent_last_hour(channel) if at > horizon)
        if len(recent) >= cap:
            capped.append(channel)
            # The slot frees when the send that filled the cap leaves the rolling hour.
            oldest = datetime.fromtimestamp(recent[len(recent) - cap], tz=now.tzinfo)
            free_at = min(free_at, oldest + CAP_PERIOD)
    return tuple(capped), free_at


def _digest_enabled(preferences: UserPreferences | None) -> bool:
    digest = preferences.digest if preferences else None
    return digest is None or bool(digest.enabled)


def _instant(value: str | None) -> datetime | None:
    return parse_timestamp(value) if value else None


def _tuple_or_none(channels: Collection[str] | None) -> tuple[str, ...] | None:
    return None if channels is None else tuple(channels)
