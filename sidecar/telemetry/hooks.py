"""Spans and per-attempt metrics: the OpenTelemetry side of the routing layer's tracing hooks.

`DetourTracing` implements `sidecar.routing.events.RequestTracing`. Per inbound request one SERVER
span (its parent: the client's `traceparent`, if any); per upstream attempt one CLIENT span named
`chat {model}` with the GenAI attributes, whose own context is what the upstream request carries.
A 429 adds `detour.rate_limited` to its attempt's span, a failover adds `detour.failover` to the
SERVER span. Metrics are recorded whether or not the trace is sampled.

Off the hot path (STYLE habit 7): before the response goes out, a request only starts its spans
(their contexts are needed for the upstream `traceparent`) and takes notes — timestamps, the
upstream's usage, the events. Attributes, span events, span ends and every metric measurement are
settled in `RequestSpan.end`, which the ingress calls once the response has been sent. Nothing
happens per stream chunk, and every hook swallows its own errors: a telemetry bug must never
break a request or a stream.

Attributes are given to spans when they are settled, not at their start: they would inform only a
custom sampler, and the samplers `OTEL_TRACES_SAMPLER` offers look at the trace id alone.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import orjson
from opentelemetry.sdk.trace import Event
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sidecar.routing.events import FailedOver, RateLimited
from sidecar.telemetry.attempt_attributes import OPERATION, AttemptAttributes
from sidecar.telemetry.otlp_encoding import UNSET
from sidecar.telemetry.spans import remote_parent
from sidecar.telemetry.usage import AnswerFacts, read_answer, read_event

if TYPE_CHECKING:
    from sidecar.dialects import Dialect
    from sidecar.dialects.sse import SseEvent
    from sidecar.providers.client import ClientHeaders, ProviderClient
    from sidecar.routing.events import Served
    from sidecar.routing.exchange import InboundRequest
    from sidecar.routing.strategies import Candidate
    from sidecar.telemetry.instruments import Instruments
    from sidecar.telemetry.spans import OpenSpan, SpanStarter

log = logging.getLogger("detour.telemetry")

_propagator = TraceContextTextMapPropagator()
_CANCELLED = Status(StatusCode.ERROR, "no response was sent")
_ERROR = Status(StatusCode.ERROR)

P = ParamSpec("P")
R = TypeVar("R")


def _guarded(method: Callable[P, R]) -> Callable[P, R | None]:
    """Run a hook; log (once per hook) instead of raising into the request, which then gets None."""
    warned = False

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        nonlocal warned
        try:
            return method(*args, **kwargs)
        except Exception:
            if not warned:
                warned = True
                log.exception("telemetry hook %s failed; the request goes on", method.__name__)
            return None

    return wrapper


class DetourTracing:
    """The process-wide hook the router holds; opens one `RequestSpan` per inbound request."""

    def __init__(
        self, spans: SpanStarter | None, instruments: Instruments | None, *, capture_content: bool
    ) -> None:
        self.spans = spans
        self.instruments = instruments
        self.capture_content = capture_content
        self.attempt_attributes = AttemptAttributes(instruments)
        self._routes: dict[str, dict[str, Any]] = {}

    def route_attributes(self, path: str) -> dict[str, Any]:
        """A request span's first attributes, one mapping per route (the chat routes: a handful),
        so the encoder writes them once (`OpenSpan.finish`'s `shared`)."""
        attributes = self._routes.get(path)
        if attributes is None:
            if len(self._routes) >= 64:
                self._routes.clear()
            attributes = self._routes[path] = {
                "http.request.method": "POST",
                "http.route": path,
                "url.path": path,
            }
        return attributes

    def start_request(self, dialect: Dialect, path: str, headers: ClientHeaders) -> RequestSpan:
        """Always returns a trace (the ingress ends it); without a span if starting one failed."""
        return RequestSpan(self, start_server_span(self.spans, f"POST {path}", headers), path)

    def start_rpc(self, service: str, method: str, headers: ClientHeaders) -> RequestSpan:
        """A gRPC call (docs/grpc.md): a SERVER span with the `rpc.*` attributes, its attempts as
        for HTTP; `end` gets the gRPC status code. Imported here so the HTTP path never loads it."""
        from sidecar.telemetry.rpc import start_rpc

        return start_rpc(self, service, method, headers)


def start_server_span(spans: SpanStarter | None, name: str, headers: ClientHeaders) -> OpenSpan | None:
    """The SERVER span of one request or call, a child of the client's `traceparent` if it sent
    one; None when tracing is off, or if starting it failed (logged: the request goes on)."""
    if spans is None:
        return None
    try:
        parent = None
        if headers.traceparent is not None:
            carrier = {"traceparent": headers.traceparent}
            if headers.tracestate is not None:
                carrier["tracestate"] = headers.tracestate
            parent = remote_parent(_propagator.extract(carrier))
        return spans.start(name, SpanKind.SERVER, parent)
    except Exception:
        log.exception("could not start the server span of %s; it goes on untraced", name)
        return None


class RequestSpan:
    """`RequestTrace` for one inbound request."""

    __slots__ = ("_attempts", "_body", "_events", "_owner", "_path", "_served", "model", "span")

    def __init__(self, owner: DetourTracing, span: OpenSpan | None, path: str) -> None:
        self._owner = owner
        self._path = path
        self.span = span  # the parent of the attempts' spans, recording or not (sampled out)
        self._attempts: list[AttemptSpan] = []
        self._events: list[tuple[int, RateLimited | FailedOver, AttemptSpan | None]] = []
        self._body: dict[str, Any] | None = None
        self._served: Served | None = None
        self.model = ""

    def on_request(self, request: InboundRequest) -> None:
        self.model = request.model
        if self._owner.capture_content:
            self._body = request.body

    @_guarded
    def start_attempt(self, client: ProviderClient, candidate: Candidate, stream: bool) -> AttemptSpan:
        attempt = AttemptSpan(self, client, candidate, stream)
        self._attempts.append(attempt)
        return attempt

    def on_rate_limited(self, event: RateLimited) -> None:
        """Noted for the attempt that got the 429: the last one started."""
        self._events.append((time.time_ns(), event, self._attempts[-1] if self._attempts else None))

    def on_failed_over(self, event: FailedOver) -> None:
        self._events.append((time.time_ns(), event, None))

    def on_served(self, event: Served) -> None:
        self._served = event

    @_guarded
    def end(self, status: int | None) -> None:
        try:
            self._settle(status)
        finally:
            # Each attempt points back at its request: left in place, every request would leave a
            # cycle of a dozen objects for the cyclic GC to find — with telemetry on, most of its
            # collections and of its cost (docs/benchmarks.md). Nothing reads them after the end.
            self._attempts.clear()
            self._events.clear()

    def _settle(self, status: int | None) -> None:
        span = self.span
        exported = span is not None and span.recording and (span.sampled or not self._plain(status))
        failovers: list[Event] = []
        for at, event, noted in self._events:  # first: their span events go on still open spans
            if isinstance(event, RateLimited):
                self._settle_rate_limited(at, event, noted)
            else:
                self._settle_failover(at, event, failovers if exported else None)
        for attempt in self._attempts:
            attempt.settle(exported or span is None)
        instruments = self._owner.instruments
        if instruments is not None and self._served is not None:
            instruments.served(self._served, self.model)
        if exported and span is not None:
            self._finish_span(span, status, failovers)

    def _plain(self, status: int | None) -> bool:
        """A plain success: answered, one attempt that succeeded, no rate limit and no failover —
        the only kind of request a success ratio may leave out (telemetry/sampling.py)."""
        if not self._answered(status) or self._events or len(self._attempts) != 1:
            return False
        return self._attempts[0].succeeded

    def _answered(self, status: int | None) -> bool:
        return status is not None and status < 400

    def _settle_rate_limited(self, at: int, event: RateLimited, attempt: AttemptSpan | None) -> None:
        if self._owner.instruments is not None:
            self._owner.instruments.rate_limited(event)
        if attempt is not None and attempt.span is not None:
            attributes: dict[str, Any] = {
                "detour.provider": event.provider_id,
                "gen_ai.request.model": event.model,
                "detour.wait_s": event.wait_s,
                "detour.wait_source": event.source.value,
                "detour.reason": event.reason.value,
            }
            attempt.events.append(Event("detour.rate_limited", attributes, at))

    def _settle_failover(self, at: int, event: FailedOver, events: list[Event] | None) -> None:
        if self._owner.instruments is not None:
            self._owner.instruments.failed_over(event)
        if events is not None:
            attributes = {
                "detour.from": event.from_provider,
                "detour.to": event.to_provider,
                "detour.reason": event.reason,
            }
            events.append(Event("detour.failover", attributes, at))

    def _finish_span(self, span: OpenSpan, status: int | None, events: list[Event]) -> None:
        attributes: dict[str, Any] = {}  # after the route's own (`shared`), none of its keys
        self._add_routing_facts(attributes)
        outcome = UNSET
        if status is None:
            attributes["error.type"] = "cancelled"
            outcome = _CANCELLED
        else:
            attributes["http.response.status_code"] = status
            if status >= 500:  # HTTP server spans: only 5xx are errors, a 4xx is the client's
                attributes["error.type"] = str(status)
                outcome = _ERROR
        span.finish(attributes, events, outcome, shared=self._owner.route_attributes(self._path))

    def _add_routing_facts(self, attributes: dict[str, Any]) -> None:
        """The model asked for and who served it: the same on an HTTP request's and a gRPC call's span."""
        if self.model:
            attributes["gen_ai.operation.name"] = OPERATION
            attributes["gen_ai.request.model"] = self.model
        served = self._served
        if served is not None:
            attributes["detour.provider"] = served.provider_id
            attributes["detour.attempts"] = served.attempts
            attributes["gen_ai.response.model"] = served.model


class AttemptSpan:
    """`AttemptTrace` for one upstream request: a CLIENT span plus the attempt's metrics, both
    settled by the request once its response has gone out (`end` only notes the outcome)."""

    __slots__ = ("_candidate", "_chunk_at", "_client", "_ended", "_facts", "_outcome", "_request",
                 "_settled", "_started", "events", "span", "stream", "upstream_headers")  # fmt: skip

    def __init__(
        self, request: RequestSpan, client: ProviderClient, candidate: Candidate, stream: bool
    ) -> None:
        self._request = request
        self._client = client
        self._candidate = candidate
        self._started = time.perf_counter()
        self._chunk_at: float | None = None
        self._ended: tuple[float, int] | None = None  # (perf_counter, time_ns) at the end
        self._outcome: tuple[int | None, str | None] = (None, "cancelled")
        self._settled = False
        self._facts = AnswerFacts()
        self.stream = stream
        self.span: OpenSpan | None = None
        self.events: list[Event] = []  # span events, added when the request settles
        self.upstream_headers: Sequence[tuple[str, str]] = ()
        spans = request._owner.spans
        if spans is not None:
            # A child of the request's span, recording or not (sampled out).
            span = spans.start(f"{OPERATION} {candidate.model}", SpanKind.CLIENT, request.span)
            self.upstream_headers = span.trace_headers()
            if span.recording:
                self.span = span

    @_guarded
    def first_chunk(self) -> None:
        if self._chunk_at is None:
            self._chunk_at = time.perf_counter()

    @_guarded
    def response_answer(self, answer: dict[str, Any]) -> None:
        if self.span is None and self._request._owner.instruments is None:
            return  # sampled out and no metrics: nothing would read the answer's facts
        keep = self._request._owner.capture_content
        read_answer(self._client.dialect, answer, self._facts, keep_output=keep)

    @_guarded
    def stream_event(self, event: SseEvent) -> None:
        if self.span is None and self._request._owner.instruments is None:
            return
        read_event(self._client.dialect, event, self._facts)

    def end(self, status: int | None, error_type: str | None) -> None:
        if self._ended is None:
            self._ended = (time.perf_counter(), time.time_ns())
            self._outcome = (status, error_type)

    @property
    def succeeded(self) -> bool:
        return self._ended is not None and self._outcome[1] is None

    def settle(self, export: bool = True) -> None:
        """Finish the span (unless the request is left out: `export`) and record the metrics,
        once; an attempt never ended counts as cancelled."""
        if self._settled:
            return
        self._settled = True
        if self._ended is None:
            self.end(None, "cancelled")
        assert self._ended is not None
        ended_at, end_ns = self._ended
        status, error_type = self._outcome
        finish = self.span is not None and export
        instruments = self._request._owner.instruments
        if not finish and instruments is None:
            return  # left out or sampled out, and no metrics
        kinds = self._request._owner.attempt_attributes
        if finish and self.span is not None:
            self._finish_span(self.span, kinds, status, error_type, end_ns)
        if instruments is None:
            return
        facts = self._facts
        series = kinds.metrics(self._client, self._candidate, facts.model, error_type)
        instruments.duration.record_series(ended_at - self._started, series.duration)
        if self.stream and self._chunk_at is not None:
            instruments.time_to_first_chunk.record_series(self._chunk_at - self._started, series.duration)
        if facts.input_tokens is not None:
            instruments.token_usage.record_series(facts.input_tokens, series.input_tokens)
        if facts.output_tokens is not None:
            instruments.token_usage.record_series(facts.output_tokens, series.output_tokens)

    def _finish_span(
        self,
        span: OpenSpan,
        kinds: AttemptAttributes,
        status: int | None,
        error_type: str | None,
        end_ns: int,
    ) -> None:
        facts = self._facts
        attributes: dict[str, Any] = {}  # after the kind's own (`shared`), none of its keys
        if status is not None:
            attributes["http.response.status_code"] = status
        if facts.model is not None:
            attributes["gen_ai.response.model"] = facts.model
        if facts.input_tokens is not None:
            attributes["gen_ai.usage.input_tokens"] = facts.input_tokens
        if facts.output_tokens is not None:
            attributes["gen_ai.usage.output_tokens"] = facts.output_tokens
        if facts.finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = tuple(facts.finish_reasons)
        request = self._request
        if request._owner.capture_content and request._body is not None:
            attributes["gen_ai.input.messages"] = _json(request._body.get("messages"))
        if facts.output is not None:
            attributes["gen_ai.output.messages"] = _json(facts.output)
        outcome = UNSET
        if error_type is not None:
            attributes["error.type"] = error_type
            outcome = Status(StatusCode.ERROR, error_type)
        span.finish(
            attributes, self.events, outcome, end_ns, shared=kinds.span(self._client, self._candidate)
        )


def _json(value: object) -> str:
    return orjson.dumps(value, default=str).decode()
