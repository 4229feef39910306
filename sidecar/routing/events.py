"""What the router tells the rest of the process: rate limits, failovers, finished requests.

Two kinds of listeners, both protocols so the routing layer never imports who implements them:

- `Observer` (the demo's live view, tests, gRPC `Admin.WatchEvents`) hears process-wide events;
  with none registered, emitting costs one empty check. A `Watcher` (`Admin.WatchEvents`, gRPC
  health; docs/grpc.md) hears configs applied and limits cleared by hand. Both may come and go at
  any time (`Router.observe`, `Router.watch`), held by the router's `Listeners`, which emits to
  them; a config source reports rejected configs (`ConfigRejected`) to its own listeners.
- `RequestTracing` (telemetry) follows one request from the ingress down to each upstream attempt:
  the ingress opens a `RequestTrace` per inbound request, the router opens an `AttemptTrace` per
  upstream request and hands its `upstream_headers` (a W3C `traceparent`) to the provider client.
  Nothing here knows OpenTelemetry; with no tracing registered the hooks are a `None` check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sidecar.providers.classify import Outcome
from sidecar.providers.ratelimit_headers import WaitSource
from sidecar.routing.limits import LimitReason

if TYPE_CHECKING:
    from sidecar.dialects import Dialect
    from sidecar.dialects.sse import SseEvent
    from sidecar.providers.client import ClientHeaders, ProviderClient
    from sidecar.routing.exchange import InboundRequest
    from sidecar.routing.strategies import Candidate


@dataclass(frozen=True, slots=True)
class RateLimited:
    provider_id: str
    model: str
    wait_s: float  # the wait actually applied (0: skipped for this request only)
    source: WaitSource
    reason: LimitReason  # quota: the whole provider is limited


@dataclass(frozen=True, slots=True)
class FailedOver:
    from_provider: str
    from_model: str
    to_provider: str
    to_model: str
    outcome: Outcome  # how the attempt of `from_provider` ended
    resumed: bool = False  # its stream broke after content was sent; `to_provider` continues it

    @property
    def reason(self) -> str:
        """The text telemetry shows: the outcome's (`rate_limit`, `timeout`, ...), or `resume`."""
        return "resume" if self.resumed else self.outcome.value


@dataclass(frozen=True, slots=True)
class Served:
    provider_id: str
    model: str
    attempts: int
    first_provider: str  # the candidate tried first; differs from provider_id after a failover


@dataclass(frozen=True, slots=True)
class ConfigApplied:
    version: str
    source: str


@dataclass(frozen=True, slots=True)
class ConfigRejected:
    """A config source offered something that did not become the config in force (reported by the
    `kube.reload.ConfigReloader`; its problems name YAML paths and never quote values)."""

    source: str
    result: str  # rejected | missing | failed
    problems: tuple[str, ...]
    active_version: str | None  # what stays in force


@dataclass(frozen=True, slots=True)
class LimitCleared:
    provider_id: str
    model: str | None  # None: every limit of the provider
    cleared: int  # entries lifted


class Observer(Protocol):
    def on_rate_limited(self, event: RateLimited) -> None: ...

    def on_failed_over(self, event: FailedOver) -> None: ...

    def on_served(self, event: Served) -> None: ...


class Watcher(Protocol):
    """Hears what changes the routing state outside requests. Called synchronously on the event
    loop: it must only take note (a bounded queue), never wait."""

    def on_config_applied(self, event: ConfigApplied) -> None: ...

    def on_limit_cleared(self, event: LimitCleared) -> None: ...


class AttemptTrace(Protocol):
    """One upstream request (a retry is a new attempt). Ended exactly once with `end`."""

    upstream_headers: Sequence[tuple[str, str]]  # sent with the upstream request (trace context)

    def first_chunk(self) -> None:
        """A streaming attempt received its first chunk of the body."""

    def response_answer(self, answer: dict[str, Any]) -> None:
        """The parsed upstream answer of a non-streaming request, in the provider's dialect."""

    def stream_event(self, event: SseEvent) -> None:
        """An upstream SSE event that may carry usage, the model or the finish reason (only those)."""

    def end(self, status: int | None, error_type: str | None) -> None:
        """`status`: the upstream HTTP status (None: none arrived); `error_type`: None on success,
        else the status as a string (`"429"`) or a reason (`timeout`, `connect_error`, ...)."""


class RequestTrace(Observer, Protocol):
    """One inbound request, opened by the ingress, which ends it with the status it sent. Its
    `on_rate_limited` always concerns the attempt started last (already ended: a 429 is recorded
    after the attempt that got it, before the next one starts)."""

    def on_request(self, request: InboundRequest) -> None:
        """The request was parsed and is about to be routed."""

    def start_attempt(
        self, client: ProviderClient, candidate: Candidate, stream: bool
    ) -> AttemptTrace | None:
        """None: no trace for this attempt (starting one failed); the attempt goes on untraced."""

    def end(self, status: int | None) -> None:
        """The response went out (a stream: to its end); None when no response could be sent."""


class RequestTracing(Protocol):
    def start_request(self, dialect: Dialect, path: str, headers: ClientHeaders) -> RequestTrace: ...

    def start_rpc(self, service: str, method: str, headers: ClientHeaders) -> RequestTrace:
        """A gRPC call (docs/grpc.md): its `end` gets the gRPC status code, not an HTTP status."""


class Listeners:
    """Who hears what the router does: the observers and watchers registered now, and for a
    request's own events its trace too. The tuples are replaced, never changed in place, so an
    emission in progress finishes with the listeners it started with."""

    __slots__ = ("observers", "watchers")

    def __init__(self, observers: Sequence[Observer] = ()) -> None:
        self.observers: tuple[Observer, ...] = tuple(observers)
        self.watchers: tuple[Watcher, ...] = ()

    def observe(self, observer: Observer) -> Callable[[], None]:
        self.observers = (*self.observers, observer)

        def unobserve() -> None:
            self.observers = tuple(each for each in self.observers if each is not observer)

        return unobserve

    def watch(self, watcher: Watcher) -> Callable[[], None]:
        self.watchers = (*self.watchers, watcher)

        def unwatch() -> None:
            self.watchers = tuple(each for each in self.watchers if each is not watcher)

        return unwatch

    def rate_limited(self, event: RateLimited, trace: RequestTrace | None) -> None:
        for observer in self.observers:
            observer.on_rate_limited(event)
        if trace is not None:
            trace.on_rate_limited(event)

    def failed_over(
        self,
        source: Candidate,
        target: Candidate,
        outcome: Outcome,
        trace: RequestTrace | None,
        *,
        resumed: bool = False,
    ) -> None:
        if not self.observers and trace is None:
            return  # the event is not even built
        event = FailedOver(
            source.provider_id, source.model, target.provider_id, target.model, outcome, resumed
        )
        for observer in self.observers:
            observer.on_failed_over(event)
        if trace is not None:
            trace.on_failed_over(event)

    def served(
        self, candidate: Candidate, attempts: int, first: Candidate, trace: RequestTrace | None
    ) -> None:
        if not self.observers and trace is None:
            return
        event = Served(candidate.provider_id, candidate.model, attempts, first.provider_id)
        for observer in self.observers:
            observer.on_served(event)
        if trace is not None:
            trace.on_served(event)

    def config_applied(self, version: str, source: str) -> None:
        if self.watchers:
            event = ConfigApplied(version, source)
            for watcher in self.watchers:
                watcher.on_config_applied(event)

    def limit_cleared(self, event: LimitCleared) -> None:
        for watcher in self.watchers:
            watcher.on_limit_cleared(event)
