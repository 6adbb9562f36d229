"""The routing decision (rules 2-5) as a pure function: time zones, quiet hours, caps."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agents.routing.decide import Plan, decide
from schemas.records import NotificationEvent, UserPreferences

# 23:30 in Paris (UTC+1 in November): inside 22:00-07:00 quiet hours.
PARIS_NIGHT = datetime(2026, 11, 23, 22, 30, tzinfo=UTC)
PARIS_DAY = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def prefs(**overrides: Any) -> UserPreferences:
    return UserPreferences.from_data(
        {
            "user_id": "ann",
            "timezone": "Europe/Paris",
            "addresses": {"email": "ann@example.com", "phone": "+33600000000"},
            "channels": {"push": False, "webhook": False, "in_app": False},
            "quiet_hours": {"start": "22:00", "end": "07:00"},
        }
        | overrides
    )


def event(**overrides: Any) -> NotificationEvent:
    return NotificationEvent.from_data(
        {
            "event_id": "e1",
            "user_id": "ann",
            "category": "billing",
            "priority": "normal",
            "title": "t",
            "body": "b",
        }
        | overrides
    )


def never_sent(_channel: str) -> Collection[float]:
    return ()


def plan_for(
    ev: NotificationEvent,
    preferences: UserPreferences | None,
    now: datetime,
    *,
    sent: dict[str, list[float]] | None = None,
    default_caps: dict[str, int] | None = None,
    only: Collection[str] | None = None,
) -> Plan:
    return decide(
        ev,
        preferences,
        now=now,
        sent_last_hour=lambda channel: (sent or {}).get(channel, []),
        default_caps=default_caps or {},
        only_channels=only,
    )


def channels(plan: Plan) -> list[str]:
    return [target.channel for target in plan.send_now]


def test_normal_outside_quiet_hours_goes_out_now_on_every_channel() -> None:
    plan = plan_for(event(), prefs(), PARIS_DAY)
    assert channels(plan) == ["email", "sms"]
    assert plan.hold_until is None
    assert plan.digest == ()


@pytest.mark.parametrize("priority", ["high", "normal"])
def test_inside_quiet_hours_across_midnight_is_held_until_they_end(priority: str) -> None:
    plan = plan_for(event(priority=priority), prefs(), PARIS_NIGHT)
    assert plan.send_now == ()
    # 07:00 in Paris on the 24th is 06:00 UTC.
    assert plan.hold_until == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
    assert plan.hold_channels == ("email", "sms")
    assert plan.reason is not None
    assert plan.reason.startswith("quiet hours")


def test_quiet_hours_end_follows_a_dst_change() -> None:
    # Night of 28-29 March 2026: Paris springs forward at 02:00; 07:00 is then UTC+2.
    plan = plan_for(event(), prefs(), datetime(2026, 3, 28, 23, 0, tzinfo=UTC))
    assert plan.hold_until == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)


def test_critical_goes_through_quiet_hours_and_caps() -> None:
    sent = {"email": [PARIS_NIGHT.timestamp() - 60] * 5}
    plan = plan_for(event(priority="critical"), prefs(caps={"email": 1}), PARIS_NIGHT, sent=sent)
    assert channels(plan) == ["email", "sms"]
    assert plan.critical


def test_send_at_in_the_future_holds_until_then() -> None:
    plan = plan_for(event(send_at="2026-11-23T12:00:00+01:00"), prefs(), PARIS_DAY)
    assert plan.hold_until == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert plan.send_now == ()


def test_send_at_in_the_past_does_not_hold() -> None:
    plan = plan_for(event(send_at="2026-11-23T09:00:00Z"), prefs(), PARIS_DAY)
    assert channels(plan) == ["email", "sms"]


def test_expired_event_is_dropped_with_a_reason() -> None:
    plan = plan_for(event(expires_at="2026-11-23T09:59:59Z"), prefs(), PARIS_DAY)
    assert plan.expired
    assert plan.send_now == ()
    assert plan.reason == "expired at 2026-11-23T09:59:59Z before delivery"


def test_low_priority_goes_to_the_digest_even_in_quiet_hours() -> None:
    plan = plan_for(event(priority="low"), prefs(), PARIS_NIGHT)
    assert plan.digest == ("email", "sms")
    assert plan.send_now == ()
    assert plan.hold_until is None


def test_low_priority_with_digests_disabled_is_sent_individually_outside_quiet_hours() -> None:
    no_digest = prefs(digest={"enabled": False})
    assert channels(plan_for(event(priority="low"), no_digest, PARIS_DAY)) == ["email", "sms"]
    held = plan_for(event(priority="low"), no_digest, PARIS_NIGHT)
    assert held.hold_until == datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def test_no_preferences_means_digest_on_and_no_quiet_hours() -> None:
    plan = plan_for(event(priority="low", channels=["in_app"]), None, PARIS_NIGHT)
    assert plan.digest == ("in_app",)


def test_over_the_cap_overflows_into_the_digest_per_channel() -> None:
    recent = PARIS_DAY.timestamp() - 600
    plan = plan_for(event(), prefs(caps={"email": 2}), PARIS_DAY, sent={"email": [recent, recent]})
    assert channels(plan) == ["sms"]
    assert plan.digest == ("email",)
    assert plan.capped == ("email",)


def test_sends_older_than_an_hour_do_not_count_against_the_cap() -> None:
    old = (PARIS_DAY - timedelta(hours=1, seconds=1)).timestamp()
    plan = plan_for(event(), prefs(caps={"email": 1}), PARIS_DAY, sent={"email": [old, old]})
    assert channels(plan) == ["email", "sms"]


def test_default_cap_applies_when_the_user_names_none() -> None:
    recent = PARIS_DAY.timestamp() - 10
    plan = plan_for(event(), prefs(), PARIS_DAY, sent={"sms": [recent]}, default_caps={"sms": 1})
    assert plan.digest == ("sms",)


def test_over_the_cap_without_digest_waits_for_a_free_slot() -> None:
    first, second = PARIS_DAY.timestamp() - 1800, PARIS_DAY.timestamp() - 600
    plan = plan_for(
        event(),
        prefs(caps={"email": 2}, digest={"enabled": False}),
        PARIS_DAY,
        sent={"email": [first, second]},
    )
    assert channels(plan) == ["sms"]
    assert plan.hold_channels == ("email",)
    # The first of the two sends leaves the rolling hour 30 minutes from now.
    assert plan.hold_until == PARIS_DAY + timedelta(minutes=30)


def test_only_channels_limits_a_released_event_to_what_it_is_still_owed() -> None:
    plan = plan_for(event(), prefs(), PARIS_DAY, only=["sms"])
    assert channels(plan) == ["sms"]


def test_nothing_deliverable_is_suppressed() -> None:
    plan = plan_for(event(channels=["push"]), prefs(), PARIS_DAY)
    assert plan.suppressed
    assert plan.resolution is not None
    assert plan.resolution.suppressed == {"push": "channel disabled by the user"}
