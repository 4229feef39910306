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

With Redis (docs/scale-out.md), circuits are shared like limits: a circuit opened here is told to
`listener` (the shared state, which only queues it), and one a peer opened is taken with `adopt`.
An adopted circuit is an ordinary open one whose reopen time came from the peer — capped at one
`timeout_secs` from now, so a peer's clock or config cannot keep it open longer than a local opening
would — and when that time comes it half-opens and probes exactly as a local one does. Its
`opened_at` is set to the reopen time minus `timeout_secs`, so the reopen order stays one order.

Pure and synchronous with an injected `now`; the event loop's single thread makes "let exactly one
probe through" a plain flag.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum

from sidecar.config.models import CircuitBreakerConfig

PURGE_AT = 0.90

CircuitKey = tuple[str, str]  # (provider id, upstream model)
# Told of every circuit this sidecar opens: (the candidate, when it half-opens on the monotonic clock).
CircuitListener = Callable[[CircuitKey, float], None]


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
    peer: bool = False  # its last opening was another sidecar's (docs/scale-out.md)


class CircuitBreakers:
    def __init__(self, settings: CircuitBreakerConfig | None = None) -> None:
        self.evictions = 0
        self._circuits: dict[CircuitKey, Circuit] = {}
        # The eviction order, without scanning: every key of `_circuits` is in exactly one of these.
        self._closed: OrderedDict[CircuitKey, None] = OrderedDict()  # oldest last failure first
        self._tripped: OrderedDict[CircuitKey, None] = OrderedDict()  # open or half-open, soonest first
        self._settings = CircuitBreakerConfig()
        self.settings = settings or self._settings
        self.listener: CircuitListener | None = None  # the shared state, while Redis is configured

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

    def adopt(self, provider_id: str, model: str, reopens_at: float, now: float) -> bool:
        """A circuit another sidecar opened (docs/scale-out.md): open here too until `reopens_at`
        (capped at one `timeout_secs` from `now`), unless an open circuit here reopens as late or
        later — a peer never shortens one. A half-open circuit is opened again: the peer has newer
        news than the probe. The failure count stays this sidecar's own. Whether it was taken."""
        timeout = self._settings.timeout_secs
        reopens_at = min(reopens_at, now + timeout)
        if reopens_at <= now:
            return False
        key = (provider_id, model)
        circuit = self._circuits.get(key)
        if circuit is None:
            self._make_room(now)
            circuit = self._circuits[key] = Circuit()
        elif circuit.state is CircuitState.OPEN:
            if circuit.opened_at + timeout >= reopens_at:
                return False
        else:
            self._closed.pop(key, None)
        circuit.state, circuit.opened_at, circuit.peer = CircuitState.OPEN, reopens_at - timeout, True
        circuit.consecutive_successes, circuit.probe_in_flight = 0, False
        self._trip_in_order(key, circuit.opened_at)
        return True

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
        circuit.state, circuit.opened_at, circuit.peer = CircuitState.OPEN, now, False
        self._tripped[key] = None
        self._tripped.move_to_end(key)  # adopted circuits opened no later than now: still in order
        if self.listener is not None:
            self.listener(key, now + self._settings.timeout_secs)

    def _trip_in_order(self, key: CircuitKey, opened_at: float) -> None:
        """Put `key` into `_tripped` behind every circuit opened no later: a peer's opening may be
        older than ones recorded here since. Only the circuits behind it move, usually none."""
        self._tripped.pop(key, None)
        behind: list[CircuitKey] = []
        for other in reversed(self._tripped):
            if self._circuits[other].opened_at <= opened_at:
                break
            behind.append(other)
        self._tripped[key] = None
        for other in reversed(behind):
            self._tripped.move_to_end(other)

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
