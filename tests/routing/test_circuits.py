"""Circuit breakers as a pure state machine: closed → open → half-open (one probe) → closed."""

from __future__ import annotations

import pytest

from sidecar.config.models import CircuitBreakerConfig
from sidecar.routing.circuits import CircuitBreakers


@pytest.fixture
def breakers() -> CircuitBreakers:
    return CircuitBreakers(CircuitBreakerConfig(failure_threshold=3, success_threshold=2, timeout_secs=30))


def test_a_candidate_without_failures_is_always_allowed(breakers: CircuitBreakers) -> None:
    assert all(breakers.allows("p", "m", now) for now in range(100))


def test_the_circuit_opens_only_after_the_threshold_of_consecutive_failures(
    breakers: CircuitBreakers,
) -> None:
    assert breakers.record_failure("p", "m", 0) is False
    assert breakers.record_failure("p", "m", 0) is False
    assert breakers.record_failure("p", "m", 0) is True
    assert breakers.allows("p", "m", 1) is False
    assert breakers.reopens_at("p", "m") == 30


def test_a_success_in_between_resets_the_failure_count(breakers: CircuitBreakers) -> None:
    breakers.record_failure("p", "m", 0)
    breakers.record_failure("p", "m", 0)
    breakers.record_success("p", "m")
    assert breakers.record_failure("p", "m", 0) is False
    assert breakers.allows("p", "m", 0)


def test_another_model_of_the_same_provider_is_not_affected(breakers: CircuitBreakers) -> None:
    for _ in range(3):
        breakers.record_failure("p", "m", 0)
    assert breakers.allows("p", "other", 1)


def test_after_the_timeout_exactly_one_probe_is_let_through(breakers: CircuitBreakers) -> None:
    for _ in range(3):
        breakers.record_failure("p", "m", 0)
    assert breakers.allows("p", "m", 29.9) is False
    assert breakers.allows("p", "m", 30) is True
    assert breakers.is_probing("p", "m")
    assert breakers.allows("p", "m", 30) is False, "the second request while the probe is out is refused"
    assert breakers.allows("p", "m", 45) is False


def test_a_failed_probe_opens_the_circuit_for_another_interval(breakers: CircuitBreakers) -> None:
    for _ in range(3):
        breakers.record_failure("p", "m", 0)
    assert breakers.allows("p", "m", 30)
    assert breakers.record_failure("p", "m", 31) is True
    assert breakers.allows("p", "m", 60) is False
    assert breakers.allows("p", "m", 61) is True


def test_the_success_threshold_of_probes_closes_the_circuit(breakers: CircuitBreakers) -> None:
    for _ in range(3):
        breakers.record_failure("p", "m", 0)
    assert breakers.allows("p", "m", 30)
    breakers.record_success("p", "m")
    assert breakers.is_probing("p", "m"), "one success of two: still half-open"
    assert breakers.allows("p", "m", 30)
    breakers.record_success("p", "m")
    assert not breakers.is_probing("p", "m")
    assert dict(breakers.items()) == {}
    assert all(breakers.allows("p", "m", 31) for _ in range(5))


def test_a_probe_that_ends_without_a_verdict_frees_the_slot(breakers: CircuitBreakers) -> None:
    for _ in range(3):
        breakers.record_failure("p", "m", 0)
    assert breakers.allows("p", "m", 30)
    breakers.release_probe("p", "m")
    assert breakers.allows("p", "m", 30)


def test_state_of_removed_providers_is_dropped(breakers: CircuitBreakers) -> None:
    breakers.record_failure("gone", "m", 0)
    breakers.record_failure("kept", "m", 0)
    breakers.keep_only({"kept"})
    assert [key for key, _ in breakers.items()] == [("kept", "m")]


def test_a_probe_that_never_reports_back_is_replaced_after_an_interval(breakers: CircuitBreakers) -> None:
    for _ in range(3):
        breakers.record_failure("p", "m", 0)
    assert breakers.allows("p", "m", 30)
    assert breakers.allows("p", "m", 59) is False
    assert breakers.allows("p", "m", 60), "the lost probe does not block the candidate forever"
