"""Circuits shared between sidecars (docs/scale-out.md): a circuit opened here is told to the
listener, one a peer opened is taken with `CircuitBreakers.adopt` — the later reopen time wins, a
local open circuit is never shortened, the table stays bounded and in reopen order, and an adopted
circuit half-opens like a local one. Pure: `now` is passed in."""

from __future__ import annotations

import pytest

from sidecar.config.models import CircuitBreakerConfig
from sidecar.routing.admin_state import describe_state
from sidecar.routing.circuits import CircuitBreakers, CircuitKey, CircuitState
from sidecar.routing.limits import RateLimitTable
from sidecar.routing.table import Clock

TIMEOUT = 30.0


def breakers(table_size: int = 1000) -> CircuitBreakers:
    settings = CircuitBreakerConfig(
        failure_threshold=3, success_threshold=1, timeout_secs=TIMEOUT, table_size=table_size
    )
    return CircuitBreakers(settings)


def trip(circuits: CircuitBreakers, model: str, now: float) -> None:
    for _ in range(circuits.settings.failure_threshold):
        circuits.record_failure("p", model, now)


def models(circuits: CircuitBreakers) -> list[str]:
    return [model for (_, model), _ in circuits.items()]


def test_a_peers_open_circuit_skips_the_candidate_until_its_reopen_time_then_half_opens() -> None:
    circuits = breakers()
    assert circuits.adopt("p", "m", 120.0, now=100.0)
    assert circuits.reopens_at("p", "m") == 120.0
    assert circuits.allows("p", "m", 119.9) is False
    assert circuits.allows("p", "m", 120.0) is True, "one probe, as for a circuit opened here"
    assert circuits.is_probing("p", "m")
    assert circuits.allows("p", "m", 120.0) is False
    circuits.record_success("p", "m")
    assert dict(circuits.items()) == {}, "the probe's success closes it (success_threshold 1)"


def test_a_failed_probe_after_a_peers_circuit_opens_it_here_for_a_full_interval() -> None:
    circuits = breakers()
    circuits.adopt("p", "m", 110.0, now=100.0)
    assert circuits.allows("p", "m", 110.0)
    assert circuits.record_failure("p", "m", 111.0) is True
    assert circuits.reopens_at("p", "m") == 111.0 + TIMEOUT
    [(_, circuit)] = circuits.items()
    assert circuit.peer is False, "this opening is this sidecar's own"


def test_the_later_reopen_time_wins_and_a_local_open_circuit_is_never_shortened() -> None:
    circuits = breakers()
    trip(circuits, "m", 100.0)  # open here until 130
    assert not circuits.adopt("p", "m", 120.0, now=101.0), "sooner than the local reopen"
    assert not circuits.adopt("p", "m", 130.0, now=101.0), "a tie keeps what is held"
    assert circuits.reopens_at("p", "m") == 130.0
    assert circuits.adopt("p", "m", 130.5, now=101.0)
    assert circuits.reopens_at("p", "m") == 130.5
    assert not circuits.adopt("p", "m", 130.2, now=101.0), "nor is a peer's shortened by another"


def test_a_peers_reopen_time_is_capped_at_one_interval_from_now() -> None:
    circuits = breakers()
    assert circuits.adopt("p", "m", 100.0 + 48 * 3600, now=100.0)
    assert circuits.reopens_at("p", "m") == 100.0 + TIMEOUT


@pytest.mark.parametrize("reopens_at", [99.0, 100.0])
def test_a_circuit_that_has_already_reopened_is_not_adopted(reopens_at: float) -> None:
    circuits = breakers()
    assert not circuits.adopt("p", "m", reopens_at, now=100.0)
    assert len(circuits) == 0


def test_a_closed_circuit_with_failures_opens_and_keeps_its_own_count() -> None:
    circuits = breakers()
    circuits.record_failure("p", "m", 100.0)
    assert circuits.adopt("p", "m", 110.0, now=100.0)
    [(_, circuit)] = circuits.items()
    assert (circuit.state, circuit.consecutive_failures, circuit.peer) == (CircuitState.OPEN, 1, True)


def test_a_half_open_circuit_is_opened_again_and_its_probe_slot_freed() -> None:
    circuits = breakers()
    trip(circuits, "m", 0.0)
    assert circuits.allows("p", "m", 30.0), "the probe is out"
    assert circuits.adopt("p", "m", 45.0, now=31.0), "a peer's probe failed meanwhile"
    assert circuits.allows("p", "m", 44.0) is False
    circuits.record_success("p", "m")  # the old probe's verdict: the peer's news stands
    assert circuits.allows("p", "m", 44.0) is False
    assert circuits.allows("p", "m", 45.0) is True


def test_only_circuits_opened_here_are_told_to_the_listener() -> None:
    circuits = breakers()
    told: list[tuple[CircuitKey, float]] = []
    circuits.listener = lambda key, reopens_at: told.append((key, reopens_at))
    trip(circuits, "m", 10.0)
    circuits.adopt("p", "other", 20.0, now=10.0)
    assert circuits.allows("p", "m", 40.0)
    circuits.record_failure("p", "m", 41.0)  # the probe failed: opened again, told again
    assert told == [(("p", "m"), 40.0), (("p", "m"), 71.0)]


def test_adopted_circuits_keep_the_table_in_reopen_order() -> None:
    circuits = breakers()
    trip(circuits, "local-a", 10.0)  # reopens at 40
    trip(circuits, "local-b", 20.0)  # reopens at 50
    circuits.adopt("p", "peer", 45.0, now=20.0)
    circuits.adopt("p", "earliest", 35.0, now=20.0)
    circuits.adopt("p", "latest", 50.5, now=21.0)
    assert models(circuits) == ["earliest", "local-a", "peer", "local-b", "latest"]


def test_adopting_into_a_full_table_evicts_like_recording_a_failure() -> None:
    circuits = breakers(table_size=3)
    circuits.record_failure("p", "closed", 0.0)
    trip(circuits, "open-a", 1.0)
    trip(circuits, "open-b", 2.0)
    assert circuits.adopt("p", "peer-1", 25.0, now=3.0)
    assert models(circuits) == ["peer-1", "open-a", "open-b"], "the closed one gave way first"
    assert circuits.adopt("p", "peer-2", 33.0, now=4.0)
    assert models(circuits) == ["open-a", "open-b", "peer-2"], "then the one that reopens soonest"
    assert (len(circuits), circuits.evictions) == (3, 2)


def test_admin_state_says_which_circuits_a_peer_opened() -> None:
    circuits = breakers()
    trip(circuits, "own", 100.0)
    circuits.adopt("p", "peer", 110.0, now=100.0)
    clock = Clock(monotonic=lambda: 100.0, wall=lambda: 1_750_000_000.0)
    listed = describe_state(None, RateLimitTable(), clock, circuits)["circuits"]
    assert listed == [
        {"provider": "p", "model": "peer", "state": "open", "consecutive_failures": 0,
         "retry_in_s": 10.0, "learned_from": "peer"},
        {"provider": "p", "model": "own", "state": "open", "consecutive_failures": 3, "retry_in_s": 30.0},
    ]  # fmt: skip
