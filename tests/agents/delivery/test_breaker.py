from __future__ import annotations

import pytest

from agents.delivery.breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: FakeClock) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=3, cooldown=10.0, max_cooldown=35.0, probe_timeout=60.0, clock=clock
    )


def tripped(clock: FakeClock) -> CircuitBreaker:
    circuit = breaker(clock)
    for _ in range(3):
        circuit.record_failure()
    return circuit


def test_a_new_breaker_is_closed_and_allows_everything() -> None:
    circuit = breaker(FakeClock())
    assert circuit.state == "closed"
    assert all(circuit.allow() for _ in range(100))
    assert circuit.retry_in() == 0


def test_fewer_consecutive_failures_than_the_threshold_keep_it_closed() -> None:
    circuit = breaker(FakeClock())
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state == "closed"
    assert circuit.allow()


def test_a_success_resets_the_consecutive_failures() -> None:
    circuit = breaker(FakeClock())
    for _ in range(5):
        circuit.record_failure()
        circuit.record_failure()
        circuit.record_success()
    assert circuit.state == "closed"
    assert circuit.consecutive_failures == 0


def test_threshold_consecutive_failures_open_it() -> None:
    clock = FakeClock()
    circuit = tripped(clock)
    assert circuit.state == "open"
    assert not circuit.allow()
    assert circuit.retry_in() == pytest.approx(10.0)
    clock.now = 4.0
    assert not circuit.allow()
    assert circuit.retry_in() == pytest.approx(6.0)


def test_stragglers_reporting_while_open_change_nothing() -> None:
    clock = FakeClock()
    circuit = tripped(clock)
    clock.now = 5.0
    circuit.record_success()
    circuit.record_failure()
    assert circuit.state == "open"
    assert circuit.retry_in() == pytest.approx(5.0)


def test_after_the_cooldown_it_is_half_open_and_lets_one_probe_through() -> None:
    clock = FakeClock()
    circuit = tripped(clock)
    clock.now = 10.0
    assert circuit.state == "half_open"
    assert circuit.retry_in() == 0
    assert circuit.allow()
    assert not circuit.allow()
    assert not circuit.allow()
    assert circuit.state == "half_open"
    assert circuit.retry_in() == pytest.approx(60.0)


def test_a_successful_probe_closes_it() -> None:
    clock = FakeClock()
    circuit = tripped(clock)
    clock.now = 10.0
    assert circuit.allow()
    circuit.record_success()
    assert circuit.state == "closed"
    assert circuit.allow()
    assert circuit.allow()


def test_a_failed_probe_reopens_it_with_a_longer_cooldown_up_to_the_cap() -> None:
    clock = FakeClock()
    circuit = tripped(clock)
    cooldowns = []
    for _ in range(4):
        clock.now += circuit.retry_in()
        assert circuit.allow()
        circuit.record_failure()
        assert circuit.state == "open"
        cooldowns.append(circuit.retry_in())
    assert cooldowns == pytest.approx([20.0, 35.0, 35.0, 35.0])


def test_closing_resets_the_cooldown_to_its_base() -> None:
    clock = FakeClock()
    circuit = tripped(clock)
    clock.now = 10.0
    circuit.allow()
    circuit.record_failure()  # reopened for 20 s
    clock.now = 30.0
    circuit.allow()
    circuit.record_success()
    for _ in range(3):
        circuit.record_failure()
    assert circuit.retry_in() == pytest.approx(10.0)


def test_closing_needs_threshold_new_failures_to_open_again() -> None:
    clock = FakeClock()
    circuit = tripped(clock)
    clock.now = 10.0
    circuit.allow()
    circuit.record_success()
    circuit.record_failure()
    circuit.record_failure()
    assert circuit.state == "closed"


def test_half_open_results_without_a_probe_in_flight_are_ignored() -> None:
    clock = FakeClock()
    circuit = tripped(clock)
    clock.now = 10.0
    circuit.record_failure()
    assert circuit.state == "half_open"
    circuit.record_success()
    assert circuit.state == "half_open"
    assert circuit.allow()


def test_a_probe_never_reported_frees_the_slot_after_the_probe_timeout() -> None:
    clock = FakeClock()
    circuit = tripped(clock)
    clock.now = 10.0
    assert circuit.allow()
    clock.now = 69.0
    assert not circuit.allow()
    assert circuit.retry_in() == pytest.approx(1.0)
    clock.now = 70.0
    assert circuit.allow()
    assert not circuit.allow()


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="cooldown"):
        CircuitBreaker(cooldown=10.0, max_cooldown=5.0)
