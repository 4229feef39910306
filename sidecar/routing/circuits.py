"""Circuit breakers per candidate (docs/architecture.md §3, the seed's `circuit_breaker` settings).

A candidate that keeps failing — 5xx, timeouts, connection errors; never 429s, which have their own
state — is skipped for `timeout_secs` instead of costing every request a failed round trip. Then
exactly one probe request is let through (half-open); `success_threshold` successes close the
circuit, a failure opens it again for another interval.

Pure and synchronous with an injected `now`; the event loop's single thread makes "let exactly one
probe through" a plain flag.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from sidecar.config.models import CircuitBreakerConfig


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class Circuit:
    state: CircuitState = CircuitState.CLOSED
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    opened_at: float = 0.0
    probe_in_flight: bool = False
    probe_started_at: float = 0.0


class CircuitBreakers:
    def __init__(self, settings: CircuitBreakerConfig | None = None) -> None:
        self.settings = settings or CircuitBreakerConfig()
        self._circuits: dict[tuple[str, str], Circuit] = {}

    def allows(self, provider_id: str, model: str, now: float) -> bool:
        """May a request go to this candidate now? Claims the probe slot when half-open."""
        circuit = self._circuits.get((provider_id, model))
        if circuit is None or circuit.state is CircuitState.CLOSED:
            return True
        if circuit.state is CircuitState.OPEN:
            if now - circuit.opened_at < self.settings.timeout_secs:
                return False
            circuit.state = CircuitState.HALF_OPEN
            circuit.consecutive_successes = 0
        if circuit.probe_in_flight and now - circuit.probe_started_at < self.settings.timeout_secs:
            return False
        # No probe out, or one that never reported back within an interval (lost): probe again.
        circuit.probe_in_flight, circuit.probe_started_at = True, now
        return True

    def record_success(self, provider_id: str, model: str) -> None:
        circuit = self._circuits.get((provider_id, model))
        if circuit is None:
            return
        circuit.consecutive_failures = 0
        if circuit.state is CircuitState.HALF_OPEN:
            circuit.probe_in_flight = False
            circuit.consecutive_successes += 1
            if circuit.consecutive_successes >= self.settings.success_threshold:
                del self._circuits[(provider_id, model)]
        elif circuit.state is CircuitState.CLOSED:
            del self._circuits[(provider_id, model)]

    def record_failure(self, provider_id: str, model: str, now: float) -> bool:
        """Count a failure; returns True when this failure opened the circuit."""
        circuit = self._circuits.setdefault((provider_id, model), Circuit())
        circuit.consecutive_successes = 0
        if circuit.state is CircuitState.HALF_OPEN:
            circuit.probe_in_flight = False
            circuit.state, circuit.opened_at = CircuitState.OPEN, now
            return True
        circuit.consecutive_failures += 1
        if (
            circuit.state is CircuitState.CLOSED
            and circuit.consecutive_failures >= self.settings.failure_threshold
        ):
            circuit.state, circuit.opened_at = CircuitState.OPEN, now
            return True
        return False

    def is_probing(self, provider_id: str, model: str) -> bool:
        circuit = self._circuits.get((provider_id, model))
        return circuit is not None and circuit.state is CircuitState.HALF_OPEN

    def release_probe(self, provider_id: str, model: str) -> None:
        """The probe ended without a verdict (a 429 or a client error): let the next request probe."""
        circuit = self._circuits.get((provider_id, model))
        if circuit is not None:
            circuit.probe_in_flight = False

    def reopens_at(self, provider_id: str, model: str) -> float | None:
        circuit = self._circuits.get((provider_id, model))
        if circuit is None or circuit.state is not CircuitState.OPEN:
            return None
        return circuit.opened_at + self.settings.timeout_secs

    def keep_only(self, provider_ids: set[str]) -> None:
        for key in [key for key in self._circuits if key[0] not in provider_ids]:
            del self._circuits[key]

    def items(self) -> Iterator[tuple[tuple[str, str], Circuit]]:
        yield from self._circuits.items()
