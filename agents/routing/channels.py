"""Which channels and addresses an event goes to (contract, routing rules 2 and 3)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from schemas.records import CHANNELS, Addresses, NotificationEvent, UserPreferences

# Users cannot opt out of critical security alerts; every other category can be muted.
OPT_OUT_EXEMPT_CATEGORY = "security"

_MISSING_ADDRESS = {
    "email": "no email address",
    "sms": "no phone number",
    "push": "no push token",
    "webhook": "no webhook URL",
}


@dataclass(frozen=True, slots=True)
class Target:
    channel: str
    address: str


@dataclass(frozen=True, slots=True)
class ChannelResolution:
    """``suppressed`` maps each requested (or defaulted-to) channel that was dropped to why."""

    targets: tuple[Target, ...]
    suppressed: dict[str, str]


def resolve_channels(
    event: NotificationEvent, preferences: UserPreferences | None
) -> ChannelResolution:
    enabled = (preferences.channels if preferences else None) or {}
    if event.channels:
        requested = set(event.channels)
    else:
        requested = {channel for channel in CHANNELS if enabled.get(channel, True)}
    opt_outs = _category_opt_outs(event, preferences)
    addresses = (preferences.addresses if preferences else None) or Addresses()

    targets: list[Target] = []
    suppressed: dict[str, str] = {}
    for channel in CHANNELS:
        if channel not in requested:
            continue
        if not enabled.get(channel, True):
            suppressed[channel] = "channel disabled by the user"
        elif opt_outs.get(channel, True) is False:
            suppressed[channel] = f"user opted out of {event.category!r} on {channel}"
        else:
            found = _addresses_for(channel, event.user_id, addresses)
            if found:
                targets.extend(Target(channel, address) for address in found)
            else:
                suppressed[channel] = _MISSING_ADDRESS[channel]
    # Validation rejects unknown channels first; this keeps a stray one visible anyway.
    for channel in sorted(requested - set(CHANNELS)):
        suppressed[channel] = "unknown channel"
    return ChannelResolution(targets=tuple(targets), suppressed=suppressed)


def _category_opt_outs(
    event: NotificationEvent, preferences: UserPreferences | None
) -> dict[str, bool]:
    if event.priority == "critical" and event.category == OPT_OUT_EXEMPT_CATEGORY:
        return {}
    categories = (preferences.categories if preferences else None) or {}
    return categories.get(event.category) or {}


def _addresses_for(channel: str, user_id: str, addresses: Addresses) -> list[str]:
    if channel == "in_app":
        return [user_id]
    if channel == "push":
        # A token listed twice would yield two deliveries with the same notification id.
        return list(dict.fromkeys(token for token in addresses.push_tokens or () if token))
    single = {
        "email": addresses.email,
        "sms": addresses.phone,
        "webhook": addresses.webhook_url,
    }.get(channel)
    return [single] if single else []


def suppression_reason(resolution: ChannelResolution) -> str:
    if not resolution.suppressed:
        return "no deliverable channel: the user has every channel disabled"
    details = "; ".join(f"{channel}: {why}" for channel, why in resolution.suppressed.items())
    return f"no deliverable channel: {details}"


def notification_id(user_id: str, event_id: str, channel: str, address: str) -> str:
    """Same inputs, same id: a replayed event yields the same notification, not a new one."""
    digest = hashlib.sha256("\x1f".join((user_id, event_id, channel, address)).encode()).digest()
    # 128 bits in hex: URL-safe, case-insensitive, and far cheaper than base32 per event.
    return "ntf_" + digest[:16].hex()
