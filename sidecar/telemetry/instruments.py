"""The metric instruments of docs/architecture.md §6, created once at start-up, and the bound on model
attributes.

Names, units and bucket boundaries follow the GenAI semantic conventions for the `gen_ai.client.*`
histograms; the `detour.*` instruments are the seed's rate-limit metrics in OTel form. Every
model-valued attribute goes through a `BoundedValues` (100 distinct values per process, the rest
`_OTHER`): model names come from clients, and each new value would be a new series forever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sidecar.routing.events import FailedOver, RateLimited, Served

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation

    from sidecar.telemetry.aggregation import Aggregation

OTHER = "_OTHER"
MAX_MODEL_VALUES = 100

# GenAI semantic conventions: ExplicitBucketBoundaries advised for these histograms.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
# Rate-limit waits: from "skip for this request" (0) through Retry-After seconds to the 48 h cap.
BACKOFF_BUCKETS = (0, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400, 172800)

ActiveLimits = Callable[[], Mapping[str, int]]
# The shared state's totals (docs/scale-out.md): its `errors` and whether it is connected; None
# while no Redis is configured (then these instruments report nothing).
SharedStateTotals = Callable[[], Mapping[str, Any] | None]


class BoundedValues:
    """Passes the first `limit` distinct values through and maps every later new value to `_OTHER`.
    Only the event loop's thread records metrics, so no lock is needed."""

    __slots__ = ("_limit", "_seen")

    def __init__(self, limit: int = MAX_MODEL_VALUES) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


class Instruments:
    """The synchronous instruments are `aggregation`'s (recorded on the request path, so they must be
    cheap: telemetry/aggregation.py); the observable ones are the SDK meter's."""

    def __init__(self, meter: Meter, aggregation: Aggregation) -> None:
        self.request_model = BoundedValues()
        self.response_model = BoundedValues()
        self.limited_model = BoundedValues()
        self._active: ActiveLimits | None = None
        self._shared: SharedStateTotals | None = None
        self.rate_limit_events = aggregation.counter(
            "detour.rate_limit.events", "{event}", "Upstream answers that rate-limited a candidate (429)."
        )
        self.alternatives_used = aggregation.counter(
            "detour.rate_limit.alternatives_used",
            "{request}",
            "Requests answered by a provider other than the rule's first choice.",
        )
        self.backoff = aggregation.histogram(
            "detour.rate_limit.backoff",
            "s",
            "The wait applied to a rate-limited candidate (0: skipped for this request only).",
            bounds=BACKOFF_BUCKETS,
        )
        self.failovers = aggregation.counter(
            "detour.failovers", "{failover}", "Moves to the next candidate within one request."
        )
        meter.create_observable_gauge(
            "detour.rate_limit.active",
            [self._observe_active],
            "{candidate}",
            "Candidates rate-limited now.",
        )
        meter.create_observable_counter(
            "detour.shared_state.errors",
            [self._observe_shared_errors],
            "{error}",
            "Failed connections and commands to the shared state's Redis (docs/scale-out.md).",
        )
        meter.create_observable_gauge(
            "detour.shared_state.connected",
            [self._observe_shared_connected],
            "1",
            "1 while the shared state's Redis is connected, else 0.",
        )
        self.duration = aggregation.histogram(
            "gen_ai.client.operation.duration",
            "s",
            "GenAI operation duration (one upstream attempt; a stream until its end).",
            bounds=DURATION_BUCKETS,
        )
        self.token_usage = aggregation.histogram(
            "gen_ai.client.token.usage",
            "{token}",
            "Number of input and output tokens used.",
            bounds=TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = aggregation.histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            "s",
            "Time to receive the first chunk of a streaming answer.",
            bounds=DURATION_BUCKETS,
        )

    def watch_limits(self, active: ActiveLimits) -> None:
        """Where `detour.rate_limit.active` reads from: limited candidates per provider id."""
        self._active = active

    def watch_shared_state(self, totals: SharedStateTotals) -> None:
        """Where the `detour.shared_state.*` instruments read from (only with a Redis backend)."""
        self._shared = totals

    def rate_limited(self, event: RateLimited, *, peer: bool = False) -> None:
        """`peer`: learned from another sidecar through the shared state, which these events then
        say with `source=peer` (a limit this sidecar met itself carries no `source`)."""
        model = self.limited_model(event.model)
        attributes = {"provider": event.provider_id, "model": model, "reason": event.reason.value}
        if peer:
            attributes["source"] = "peer"
            self.rate_limit_events.add(1, attributes)
            return  # the wait was the peer's to choose: `detour.rate_limit.backoff` is this sidecar's
        self.rate_limit_events.add(1, attributes)
        self.backoff.record(event.wait_s, {"provider": event.provider_id})

    def failed_over(self, event: FailedOver) -> None:
        self.failovers.add(1, {"from": event.from_provider, "to": event.to_provider, "reason": event.reason})

    def served(self, event: Served, requested_model: str) -> None:
        if event.provider_id == event.first_provider:
            return
        attributes = {
            "primary_provider": event.first_provider,
            "alternative_provider": event.provider_id,
            "model": self.request_model(requested_model),
        }
        self.alternatives_used.add(1, attributes)

    def _observe_shared_errors(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        totals = self._shared() if self._shared is not None else None
        return [] if totals is None else [Observation(int(totals["errors"]), {"backend": "redis"})]

    def _observe_shared_connected(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        totals = self._shared() if self._shared is not None else None
        return [] if totals is None else [Observation(int(bool(totals["connected"])), {"backend": "redis"})]

    def _observe_active(self, options: CallbackOptions) -> Iterable[Observation]:
        from opentelemetry.metrics import Observation

        if self._active is None:
            return []
        return [Observation(count, {"provider": provider}) for provider, count in self._active().items()]
