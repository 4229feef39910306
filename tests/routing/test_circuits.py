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


# --- the table is bounded: model names come from clients (docs/architecture.md §8) -----------------------


def bounded(size: int, *, failure_threshold: int = 3) -> CircuitBreakers:
    settings = CircuitBreakerConfig(
        failure_threshold=failure_threshold, success_threshold=1, timeout_secs=30, table_size=size
    )
    return CircuitBreakers(settings)


def trip(breakers: CircuitBreakers, model: str, now: float) -> None:
    for _ in range(breakers.settings.failure_threshold):
        breakers.record_failure("p", model, now)
    assert breakers.reopens_at("p", model) == now + breakers.settings.timeout_secs


def models(breakers: CircuitBreakers) -> list[str]:
    return [model for (_, model), _ in breakers.items()]


def test_the_table_holds_1000_circuits_by_default() -> None:
    assert CircuitBreakers().capacity == CircuitBreakerConfig().table_size == 1000


def test_30k_distinct_failing_models_leave_the_table_at_its_bound_and_count_the_evictions() -> None:
    breakers = CircuitBreakers()
    for n in range(30_000):
        breakers.record_failure("p", f"model-{n}", n / 1000)

    assert len(breakers) == breakers.capacity == 1000
    assert breakers.evictions == 29_000
    assert models(breakers) == [f"model-{n}" for n in range(29_000, 30_000)], "the newest are kept"


def test_closed_circuits_without_a_recent_failure_are_forgotten_first_and_not_counted() -> None:
    breakers = bounded(10)
    for n in range(8):
        breakers.record_failure("p", f"old-{n}", 0)
    breakers.record_failure("p", "recent", 50)
    for n in range(3):
        breakers.record_failure("p", f"new-{n}", 60)  # old-*: last failure more than 30 s ago

    assert models(breakers) == ["recent", "new-0", "new-1", "new-2"]
    assert breakers.evictions == 0


def test_when_full_the_closed_circuit_with_the_oldest_failure_gives_way_before_any_open_one() -> None:
    breakers = bounded(4)
    trip(breakers, "open", 0)
    breakers.record_failure("p", "a", 1)
    breakers.record_failure("p", "b", 2)
    breakers.record_failure("p", "c", 3)
    breakers.record_failure("p", "a", 4)  # a failed again: now b's failure is the oldest

    breakers.record_failure("p", "d", 5)

    assert models(breakers) == ["open", "c", "a", "d"]
    assert breakers.evictions == 1
    assert breakers.allows("p", "open", 5) is False, "the open circuit still skips its candidate"


def test_a_table_full_of_tripped_circuits_lets_the_one_that_reopens_soonest_give_way() -> None:
    breakers = bounded(3)
    trip(breakers, "first", 0)
    trip(breakers, "second", 10)
    trip(breakers, "third", 20)
    assert breakers.allows("p", "first", 30), "first is half-open, its probe out"
    assert breakers.record_failure("p", "first", 31), "the probe failed: open for another interval"

    breakers.record_failure("p", "newcomer", 32)

    assert models(breakers) == ["third", "first", "newcomer"], "second reopened soonest (at 40)"
    assert breakers.evictions == 1


def test_a_half_open_circuit_is_nearer_to_closing_than_an_open_one() -> None:
    breakers = bounded(2)
    trip(breakers, "probing", 0)
    trip(breakers, "open", 20)
    assert breakers.allows("p", "probing", 30)

    breakers.record_failure("p", "newcomer", 31)

    assert models(breakers) == ["open", "newcomer"]
    breakers.record_success("p", "probing")  # the evicted probe's verdict arrives: nothing to do
    assert breakers.record_failure("p", "probing", 32) is False, "a new circuit, closed"


def test_circuits_the_table_already_holds_never_make_room() -> None:
    breakers = bounded(2, failure_threshold=100)
    breakers.record_failure("p", "a", 0)
    breakers.record_failure("p", "b", 0)
    for now in range(1, 50):
        breakers.record_failure("p", "a", now)
        breakers.record_failure("p", "b", now)

    assert (len(breakers), breakers.evictions) == (2, 0)


def test_a_closed_circuit_that_succeeds_or_opens_moves_between_the_indexes() -> None:
    breakers = bounded(3)
    breakers.record_failure("p", "healed", 0)
    breakers.record_success("p", "healed")
    trip(breakers, "opened", 1)
    breakers.allows("p", "opened", 31)
    breakers.record_success("p", "opened")  # success_threshold 1: closed and forgotten
    for n in range(3):
        breakers.record_failure("p", f"m-{n}", 40)

    assert models(breakers) == ["m-0", "m-1", "m-2"]
    assert breakers.evictions == 0


def test_a_smaller_table_size_from_a_reload_evicts_down_to_it_at_once() -> None:
    breakers = bounded(10)
    trip(breakers, "open", 0)
    for n in range(5):
        breakers.record_failure("p", f"m-{n}", 1)

    breakers.settings = CircuitBreakerConfig(failure_threshold=3, timeout_secs=30, table_size=2)

    assert models(breakers) == ["open", "m-4"]
    assert breakers.evictions == 4


def test_circuits_of_removed_providers_leave_both_orders() -> None:
    breakers = bounded(2)
    trip(breakers, "open", 0)
    breakers.record_failure("gone", "m", 0)
    breakers.keep_only({"p"})
    breakers.record_failure("p", "closed", 1)

    assert models(breakers) == ["open", "closed"]
    assert breakers.evictions == 0
