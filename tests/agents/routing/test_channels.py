from __future__ import annotations

import re
from typing import Any

from agents.routing.channels import (
    ChannelResolution,
    Target,
    notification_id,
    resolve_channels,
    suppression_reason,
)
from schemas.records import CHANNELS, Addresses, NotificationEvent, UserPreferences

FULL_ADDRESSES = Addresses(
    email="ana@example.com",
    phone="+351910000000",
    push_tokens=["tok-1"],
    webhook_url="https://hooks.example.com/ana",
)


def event(**fields: Any) -> NotificationEvent:
    base: dict[str, Any] = {
        "event_id": "evt-1",
        "user_id": "ana",
        "category": "billing",
        "priority": "normal",
        "title": "Invoice ready",
        "body": "Your invoice is ready.",
    }
    return NotificationEvent(**{**base, **fields})


def prefs(**fields: Any) -> UserPreferences:
    return UserPreferences(**{"user_id": "ana", "addresses": FULL_ADDRESSES, **fields})


def channels_of(resolution: ChannelResolution) -> list[str]:
    return [target.channel for target in resolution.targets]


def test_defaults_to_every_channel_in_contract_order() -> None:
    resolution = resolve_channels(event(), prefs())

    assert resolution.targets == (
        Target("email", "ana@example.com"),
        Target("sms", "+351910000000"),
        Target("push", "tok-1"),
        Target("in_app", "ana"),
        Target("webhook", "https://hooks.example.com/ana"),
    )
    assert resolution.suppressed == {}


def test_default_channels_skip_disabled_ones_without_reporting_them() -> None:
    resolution = resolve_channels(event(), prefs(channels={"sms": False, "webhook": False}))

    assert channels_of(resolution) == ["email", "push", "in_app"]
    assert resolution.suppressed == {}


def test_requested_channels_intersect_enabled_opt_outs_and_addresses() -> None:
    preferences = prefs(
        addresses=Addresses(email="ana@example.com", push_tokens=["tok-1"]),
        channels={"sms": False},
        categories={"billing": {"push": False, "in_app": True}},
    )
    requested = event(channels=["webhook", "push", "sms", "email", "in_app"])

    resolution = resolve_channels(requested, preferences)

    assert channels_of(resolution) == ["email", "in_app"]
    assert resolution.suppressed == {
        "sms": "channel disabled by the user",
        "push": "user opted out of 'billing' on push",
        "webhook": "no webhook URL",
    }


def test_opt_outs_of_other_categories_do_not_apply() -> None:
    preferences = prefs(categories={"marketing": {"email": False}})

    resolution = resolve_channels(event(channels=["email"]), preferences)

    assert resolution.targets == (Target("email", "ana@example.com"),)


def test_a_channel_missing_from_the_map_counts_as_enabled() -> None:
    resolution = resolve_channels(event(channels=["email"]), prefs(channels={"sms": False}))

    assert channels_of(resolution) == ["email"]


def test_no_preferences_means_in_app_only() -> None:
    resolution = resolve_channels(event(), None)

    assert resolution.targets == (Target("in_app", "ana"),)
    assert resolution.suppressed == {
        "email": "no email address",
        "sms": "no phone number",
        "push": "no push token",
        "webhook": "no webhook URL",
    }


def test_preferences_without_addresses_mean_in_app_only() -> None:
    resolution = resolve_channels(event(), UserPreferences(user_id="ana"))

    assert channels_of(resolution) == ["in_app"]


def test_one_target_per_push_token_in_list_order() -> None:
    preferences = prefs(addresses=Addresses(push_tokens=["tok-b", "tok-a", "", "tok-b"]))

    resolution = resolve_channels(event(channels=["push"]), preferences)

    assert resolution.targets == (Target("push", "tok-b"), Target("push", "tok-a"))


def test_critical_security_ignores_opt_outs() -> None:
    alert = event(category="security", priority="critical", channels=["email", "push"])
    opted_out = {"security": {"email": False, "push": False}}

    resolution = resolve_channels(alert, prefs(categories=opted_out))

    assert channels_of(resolution) == ["email", "push"]
    assert resolution.suppressed == {}


def test_non_critical_security_respects_opt_outs() -> None:
    alert = event(category="security", priority="high", channels=["email"])

    resolution = resolve_channels(alert, prefs(categories={"security": {"email": False}}))

    assert resolution.targets == ()
    assert resolution.suppressed == {"email": "user opted out of 'security' on email"}


def test_critical_security_still_needs_an_enabled_channel_and_an_address() -> None:
    alert = event(category="security", priority="critical", channels=["email", "sms", "push"])
    preferences = prefs(
        addresses=Addresses(phone="+351910000000"),
        channels={"sms": False},
        categories={"security": {"email": False, "sms": False, "push": False}},
    )

    resolution = resolve_channels(alert, preferences)

    assert resolution.targets == ()
    assert resolution.suppressed == {
        "email": "no email address",
        "sms": "channel disabled by the user",
        "push": "no push token",
    }


def test_critical_outside_security_respects_opt_outs() -> None:
    urgent = event(category="billing", priority="critical", channels=["email", "sms"])

    resolution = resolve_channels(urgent, prefs(categories={"billing": {"email": False}}))

    assert channels_of(resolution) == ["sms"]
    assert resolution.suppressed == {"email": "user opted out of 'billing' on email"}


def test_unknown_requested_channel_is_reported() -> None:
    resolution = resolve_channels(event(channels=["email", "fax"]), prefs())

    assert channels_of(resolution) == ["email"]
    assert resolution.suppressed == {"fax": "unknown channel"}


def test_suppression_reason_lists_every_dropped_channel() -> None:
    preferences = prefs(addresses=Addresses(), channels={"sms": False})

    resolution = resolve_channels(event(channels=["email", "sms"]), preferences)

    assert resolution.targets == ()
    assert suppression_reason(resolution) == (
        "no deliverable channel: email: no email address; sms: channel disabled by the user"
    )


def test_suppression_reason_when_every_channel_is_disabled() -> None:
    preferences = prefs(channels=dict.fromkeys(CHANNELS, False))

    resolution = resolve_channels(event(), preferences)

    assert resolution == ChannelResolution(targets=(), suppressed={})
    assert suppression_reason(resolution) == (
        "no deliverable channel: the user has every channel disabled"
    )


def test_notification_id_is_deterministic_and_url_safe() -> None:
    first = notification_id("ana", "evt-1", "email", "ana@example.com")

    assert first == notification_id("ana", "evt-1", "email", "ana@example.com")
    assert re.fullmatch(r"ntf_[0-9a-f]{32}", first)


def test_notification_id_differs_per_part() -> None:
    ids = {
        notification_id("ana", "evt-1", "email", "ana@example.com"),
        notification_id("ana", "evt-1", "push", "tok-1"),
        notification_id("ana", "evt-1", "push", "tok-2"),
        notification_id("ana", "evt-2", "push", "tok-1"),
        notification_id("bob", "evt-1", "push", "tok-1"),
        # The separator keeps shifted boundaries apart.
        notification_id("an", "aevt-1", "push", "tok-1"),
    }

    assert len(ids) == 6
