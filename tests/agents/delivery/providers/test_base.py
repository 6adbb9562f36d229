from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from agents.delivery.providers.base import (
    InvalidAddressError,
    PermanentDeliveryError,
    TransientDeliveryError,
    UnregisteredTokenError,
    classify_http_status,
    parse_retry_after,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_retry_after_in_delta_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0


def test_retry_after_as_http_date_counts_from_now() -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    assert later.endswith("GMT")
    assert parse_retry_after(later, now=NOW) == 90.0


def test_retry_after_date_in_the_past_means_now() -> None:
    earlier = format_datetime(NOW - timedelta(hours=1), usegmt=True)
    assert parse_retry_after(earlier, now=NOW) == 0.0


def test_retry_after_in_obsolete_date_form_without_zone_is_gmt() -> None:
    # RFC 850 form, still allowed for recipients by RFC 9110.
    assert parse_retry_after("Thursday, 01-Jan-26 12:00:30 GMT", now=NOW) == 30.0


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1.5e3", "Mon, 99 Foo"])
def test_unparseable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_success_is_no_error(status: int) -> None:
    assert classify_http_status(status, {}, "") is None


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_transient(status: int) -> None:
    error = classify_http_status(status, {}, "busy")
    assert isinstance(error, TransientDeliveryError)
    assert error.status == status
    assert error.retry_after is None
    assert "busy" in error.reason


def test_retry_after_header_is_read_case_insensitively() -> None:
    error = classify_http_status(429, {"retry-after": "7"}, "")
    assert isinstance(error, TransientDeliveryError)
    assert error.retry_after == 7.0


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 413, 422])
def test_other_client_errors_are_permanent(status: int) -> None:
    error = classify_http_status(status, {}, "")
    assert type(error) is PermanentDeliveryError
    assert error.status == status


def test_redirects_are_permanent_and_say_where_they_pointed() -> None:
    error = classify_http_status(302, {"Location": "http://10.0.0.1/"}, "")
    assert type(error) is PermanentDeliveryError
    assert "not followed" in error.reason
    assert "10.0.0.1" in error.reason


def test_long_error_bodies_are_shortened_in_the_reason() -> None:
    error = classify_http_status(400, {}, "x" * 10_000)
    assert error is not None
    assert len(error.reason) < 400


def test_error_hierarchy_lets_agents_catch_broadly() -> None:
    unregistered = UnregisteredTokenError("tok", "gone")
    assert isinstance(unregistered, InvalidAddressError)
    assert isinstance(unregistered, PermanentDeliveryError)
    assert unregistered.address == "tok"
    assert str(unregistered) == "gone"
