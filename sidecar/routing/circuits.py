"""Circuit breakers per candidate (docs/architecture.md §3, the seed's `circuit_breaker` settings).

A candidate that keeps failing — 5xx, timeouts, connection errors; never 429s, which have their own
state — is skipped for `timeout_secs` instead of costing every request a failed round trip. Then
exactly one probe request is let through (half-open); `success_threshold` successes close the
circuit, a failure opens it again for another interval.

The table is bounded (docs/architecture.md §8): candidates are keyed by model names the clients
choose, so it holds at most `table_size` circuits. Making room for a new one: at 90 % of the
capacity, closed circuits with no failure within the last `timeout_secs` are dropped; when still
full, the closed circuit whose last failure is oldest gives way; only when every circuit is open or
half-open does the one that reopens soonest give way. Every circuit dropped while the table is full
is counted in `evictions`. Two ordered indexes keep this O(1) amortised per recorded failure, with
no scan of the table: closed circuits by last failure, tripped (open or half-open) ones by the time
they opened — with one `timeout_secs` for all, the order in which they reopen.

Pure and synchronous with an injected `now`; the event loop's single thread makes "let exactly one
probe through" a plain flag.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from sidecar.config.models import CircuitBreakerConfig

PURGE_AT = 0.90

CircuitKey = tuple[str, str]  # (provider id, upstream model)


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
    last_failure_at: float = 0.0


class CircuitBreakers:
    def __init__(self, settings: CircuitBreakerConfig | None = None) -> None:
        self.evictions = 0
        self._circuits: dict[CircuitKey, Circuit] = {}
        # The eviction order, without scanning: every key of `_circuits` is in exactly one of these.
        self._closed: OrderedDict[CircuitKey, None] = OrderedDict()  # oldest last failure first
        self._tripped: OrderedDict[CircuitKey, None] = OrderedDict()  # open or half-open, soonest first
        self._settings = CircuitBreakerConfig()
        self.settings = settings or self._settings

    @property
    def settings(self) -> CircuitBreakerConfig:
        return self._settings

    @settings.setter
    def settings(self, settings: CircuitBreakerConfig) -> None:
        """New settings (a reload); a smaller `table_size` evicts down to it at once."""
        self._settings = settings
        self._evict_down_to(settings.table_size)

    @property
    def capacity(self) -> int:
        return self._settings.table_size

    def __len__(self) -> int:
        return len(self._circuits)

    def allows(self, provider_id: str, model: str, now: float) -> bool:
        """May a request go to this candidate now? Claims the probe slot when half-open."""
        circuit = self._circuits.get((provider_id, model))
        if circuit is None or circuit.state is CircuitState.CLOSED:
            return True
        if circuit.state is CircuitState.OPEN:
            if now - circuit.opened_at < self._settings.timeout_secs:
                return False
            circuit.state = CircuitState.HALF_OPEN
            circuit.consecutive_successes = 0
        if circuit.probe_in_flight and now - circuit.probe_started_at < self._settings.timeout_secs:
            return False
        # No probe out, or one that never reported back within an interval (lost): probe again.
        circuit.probe_in_flight, circuit.probe_started_at = True, now
        return True

    def record_success(self, provider_id: str, model: str) -> None:
        key = (provider_id, model)
        circuit = self._circuits.get(key)
        if circuit is None:
            return
        circuit.consecutive_failures = 0
        if circuit.state is CircuitState.HALF_OPEN:
            circuit.probe_in_flight = False
            circuit.consecutive_successes += 1
            if circuit.consecutive_successes >= self._settings.success_threshold:
                self._drop(key)
        elif circuit.state is CircuitState.CLOSED:
            self._drop(key)

    def record_failure(self, provider_id: str, model: str, now: float) -> bool:
        """Count a failure; returns True when this failure opened the circuit."""
        key = (provider_id, model)
        circuit = self._circuits.get(key)
        if circuit is None:
            self._make_room(now)
            circuit = self._circuits[key] = Circuit()
            self._closed[key] = None
        circuit.last_failure_at = now
        circuit.consecutive_successes = 0
        if circuit.state is CircuitState.HALF_OPEN:
            circuit.probe_in_flight = False
            self._open(key, circuit, now)
            return True
        circuit.consecutive_failures += 1
        if circuit.state is CircuitState.CLOSED:
            if circuit.consecutive_failures >= self._settings.failure_threshold:
                del self._closed[key]
                self._open(key, circuit, now)
                return True
            self._closed.move_to_end(key)
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
        return circuit.opened_at + self._settings.timeout_secs

    def keep_only(self, provider_ids: set[str]) -> None:
        for key in [key for key in self._circuits if key[0] not in provider_ids]:
            self._drop(key)

    def items(self) -> Iterator[tuple[CircuitKey, Circuit]]:
        """Soonest to change first: open and half-open circuits in the order they reopen, then
        closed ones, the oldest last failure first (the next to give way)."""
        for key in self._tripped:
            yield key, self._circuits[key]
        for key in self._closed:
            yield key, self._circuits[key]

    def _open(self, key: CircuitKey, circuit: Circuit, now: float) -> None:
        circuit.state, circuit.opened_at = CircuitState.OPEN, now
        self._tripped[key] = None
        self._tripped.move_to_end(key)

    def _drop(self, key: CircuitKey) -> None:
        del self._circuits[key]
        self._closed.pop(key, None)
        self._tripped.pop(key, None)

    def _make_room(self, now: float) -> None:
        """Before a new circuit is added."""
        if len(self._circuits) < self.capacity * PURGE_AT:
            return
        stale_before = now - self._settings.timeout_secs
        while self._closed:
            oldest = next(iter(self._closed))
            if self._circuits[oldest].last_failure_at > stale_before:
                break
            self._drop(oldest)  # no recent failure: forgotten, like an expired limit
        self._evict_down_to(self.capacity - 1)

    def _evict_down_to(self, size: int) -> None:
        while len(self._circuits) > size:
            order = self._closed or self._tripped
            self._drop(next(iter(order)))
            self.evictions += 1
