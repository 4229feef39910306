"""Spans started as bare contexts and finished straight into the span processors (STYLE habit 7).

The SDK's `Tracer.start_span` builds a mutable `Span` per call — a lock, bounded attribute, event
and link containers, a start notification to every processor — although Detour knows a span's
attributes and events only when it settles them, all at once, after the response went out. So a
span is started here as what the upstream `traceparent` needs (the sampler's decision, ids, a
`SpanContext`) and finished as one `ReadableSpan` handed to the processors' `on_end` — or, for the
OTLP exporter's processor, as its fields, which it encodes without the `ReadableSpan` being built:
what the exporters receive is the same data the SDK span would have produced (same sampler, id
generator, resource, instrumentation scope and processors, all the `TracerProvider`'s).

Span limits (`OTEL_SPAN_ATTRIBUTE_*`, `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, ...) are honoured when
set; by default Detour's few attributes and events are far below them and are not copied again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.status import Status

from sidecar.telemetry.otlp_encoding import UNSET

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace.span import TraceState

    from sidecar.telemetry.span_export import EncodingSpanProcessor

_SAMPLED = TraceFlags.SAMPLED
_RANDOM_TRACE_ID = TraceFlags.RANDOM_TRACE_ID
_TRACE_FLAGS = {flags: TraceFlags(flags) for flags in range(4)}  # sampled and random-trace-id bits
_DEFAULT_LIMITS = (128, None, 128, None, 128)  # what `SpanStarter` compares (Detour's spans have no links)
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT  # the ratio rule looks at the lower 64 bits


class SpanStarter:
    """Created once at start-up from the `TracerProvider` and the processor it exports through."""

    __slots__ = ("_bounded", "_emitters", "_encoders", "_ids", "_inline", "_limits", "_processor",
                 "_processors", "_resource", "_sampler", "_scope")  # fmt: skip

    def __init__(
        self, provider: TracerProvider, processor: SpanProcessor, scope: InstrumentationScope
    ) -> None:
        self._sampler = provider.sampler
        self._inline = inline_decision(provider.sampler)
        self._ids = provider.id_generator
        self._resource = provider.resource
        self._processor = processor
        self._scope = scope
        self._limits = SpanLimits()
        limits = self._limits
        self._bounded = (
            limits.max_span_attributes,
            limits.max_span_attribute_length,
            limits.max_event_attributes,
            limits.max_attribute_length,
            limits.max_events,
        ) != _DEFAULT_LIMITS
        self._processors: object = None  # the processors `_emitters` was computed for
        self._emitters: tuple[Callable[[ReadableSpan], None], ...] = ()
        self._encoders: tuple[EncodingSpanProcessor, ...] = ()
        self._update_emitters()

    def start(self, name: str, kind: SpanKind, parent: OpenSpan | SpanContext | None) -> OpenSpan:
        """What `Tracer.start_span` decides at the start: ids, sampling, trace flags and state.
        `parent`: the request's SERVER span (for an attempt), a valid span context (the client's),
        or None."""
        if parent is None:
            trace_id = self._ids.generate_trace_id()
            random_bit = _RANDOM_TRACE_ID if self._ids.is_trace_id_random() else 0
        elif isinstance(parent, OpenSpan):  # read from its fields, not the context's properties
            trace_id = parent.trace_id
            random_bit = parent.flags & _RANDOM_TRACE_ID
        else:
            trace_id = parent.trace_id
            random_bit = parent.trace_flags & _RANDOM_TRACE_ID
        sampler_attributes: Mapping[str, Any] | None = None
        if self._inline is not None:
            # What Detour's two usual samplers decide, without their calls, contexts and result
            # objects (measured: a fifth of what starting a span cost): a parent's sampled flag,
            # else the trace id against the ratio's bound.
            record_all, bound = self._inline
            if parent is None:
                sampled = trace_id & _TRACE_ID_LIMIT < bound
                trace_state = None
            elif isinstance(parent, OpenSpan):
                sampled = parent.flags & _SAMPLED == _SAMPLED
                trace_state = parent.trace_state
            else:
                sampled = parent.trace_flags.sampled
                trace_state = parent.trace_state
            recording = record_all or sampled
        else:
            in_context = None
            if parent is not None:
                parent_context = parent.context if isinstance(parent, OpenSpan) else parent
                in_context = set_span_in_context(NonRecordingSpan(parent_context))
            result = self._sampler.should_sample(in_context, trace_id, name, kind, None, ())
            sampled = result.decision.is_sampled()
            recording = result.decision.is_recording()
            trace_state = result.trace_state
            sampler_attributes = result.attributes
        flags = (_SAMPLED if sampled else 0) | random_bit
        span_id = self._ids.generate_span_id()
        starter = self if recording else None
        return OpenSpan(
            starter, name, kind, trace_id, span_id, flags, trace_state, parent, sampler_attributes
        )

    def _finish(
        self,
        span: OpenSpan,
        attributes: dict[str, Any],
        events: Sequence[Event],
        status: Status,
        end_ns: int | None,
        shared: Mapping[str, Any] | None,
    ) -> None:
        if span.sampler_attributes or (shared and self._bounded):
            attributes = {**(span.sampler_attributes or {}), **(shared or {}), **attributes}
            shared = None
        if self._bounded:
            attributes, events = self._bound(attributes, events)
        if end_ns is None:
            end_ns = time_ns()
        if getattr(self._processor, "_span_processors", None) is not self._processors:
            self._update_emitters()
        emitters = self._emitters
        for encoder in self._encoders:
            if not encoder.emit_open(
                span, shared, attributes, events, status, end_ns, self._resource, self._scope
            ):
                emitters += (encoder.emit,)  # an attribute only the library's encoder writes
        if emitters:
            if shared:
                attributes = {**shared, **attributes}
            self._emit(span, attributes, events, status, end_ns, emitters)

    def _emit(
        self,
        span: OpenSpan,
        attributes: Mapping[str, Any],
        events: Sequence[Event],
        status: Status,
        end_ns: int,
        emitters: tuple[Callable[[ReadableSpan], None], ...],
    ) -> None:
        """The finished span as the SDK's processors take it."""
        if span.flags & _SAMPLED:
            context = span.context
        else:  # recorded only, and kept for what happened (sampling.py)
            context = SpanContext(
                span.trace_id,
                span.span_id,
                is_remote=False,
                trace_flags=_TRACE_FLAGS[span.flags | _SAMPLED],
                trace_state=span.trace_state,
            )
        readable = ReadableSpan(
            name=span.name,
            context=context,
            parent=span.parent,
            resource=self._resource,
            attributes=attributes,
            events=events or (),  # no list kept alive in the export queue for nothing
            links=(),
            kind=span.kind,
            status=status,
            start_time=span.start_ns,
            end_time=end_ns,
            instrumentation_scope=self._scope,
        )
        for emit in emitters:
            emit(readable)

    def _update_emitters(self) -> None:
        """Where a finished span goes: each processor's `on_end` — for the SDK's
        `BatchSpanProcessor`, straight to its queue (its `on_end` only checks the sampled flag
        first, which every span finished here has), and the OTLP exporter's
        `EncodingSpanProcessor` gets the span's fields to encode. Recomputed when processors are
        added."""
        from sidecar.telemetry.span_export import EncodingSpanProcessor

        processors = getattr(self._processor, "_span_processors", None)
        self._processors = processors
        if processors is None:
            processors = (self._processor,)
        encoders = [p for p in processors if type(p) is EncodingSpanProcessor and not self._bounded]
        self._encoders = tuple(encoders)
        self._emitters = tuple(_emitter(p) for p in processors if p not in encoders)

    def _bound(self, attributes: dict[str, Any], events: Sequence[Event]) -> tuple[Any, Sequence[Event]]:
        """As the SDK's span would: only when limits were configured."""
        limits = self._limits
        bounded = BoundedAttributes(
            limits.max_span_attributes,
            attributes,
            immutable=True,
            max_value_len=limits.max_span_attribute_length,
        )
        # The span's own list: the oldest events go first, and it counts what it dropped.
        return bounded, BoundedList.from_seq(
            limits.max_events,
            [
                Event(
                    event.name,
                    BoundedAttributes(
                        limits.max_event_attributes,
                        event.attributes,
                        immutable=True,
                        max_value_len=limits.max_attribute_length,
                    ),
                    event.timestamp,
                )
                for event in events
            ],
        )


class OpenSpan:
    """A started span: its ids and flags now (its `SpanContext` built when first asked for), its
    attributes and events when it is finished (once)."""

    __slots__ = ("_context", "_parent", "_starter", "flags", "kind", "name", "sampler_attributes",
                 "span_id", "start_ns", "trace_id", "trace_state")  # fmt: skip

    def __init__(
        self,
        starter: SpanStarter | None,
        name: str,
        kind: SpanKind,
        trace_id: int,
        span_id: int,
        flags: int,
        trace_state: TraceState | None,
        parent: OpenSpan | SpanContext | None,
        sampler_attributes: Mapping[str, Any] | None,
    ) -> None:
        self._starter = starter
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags  # the W3C trace flags: sampled (1), random trace id (2)
        self.trace_state = trace_state
        self._parent = parent
        self._context: SpanContext | None = None
        self.sampler_attributes = sampler_attributes
        self.start_ns = time_ns()

    @property
    def context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = SpanContext(
                self.trace_id,
                self.span_id,
                is_remote=False,
                trace_flags=_TRACE_FLAGS[self.flags],
                trace_state=self.trace_state,
            )
        return context

    @property
    def parent(self) -> SpanContext | None:
        parent = self._parent
        return parent.context if isinstance(parent, OpenSpan) else parent

    def parent_id(self) -> tuple[int | None, bool]:
        """The parent's span id (None for a root) and whether it is remote (a client's)."""
        parent = self._parent
        if parent is None:
            return None, False
        if isinstance(parent, OpenSpan):
            return parent.span_id, False
        return parent.span_id, parent.is_remote

    @property
    def recording(self) -> bool:
        """False when sampled out (or already finished): then only its context is used."""
        return self._starter is not None

    @property
    def sampled(self) -> bool:
        """Kept whatever happens; a span recorded but not sampled is kept only for what happened."""
        return self.flags & _SAMPLED == _SAMPLED

    def trace_headers(self) -> list[tuple[str, str]]:
        """Its W3C trace context, for the upstream request it stands for (none for invalid ids,
        which only a custom id generator could give)."""
        if not (self.trace_id and self.span_id):
            return []
        headers = [("traceparent", f"00-{self.trace_id:032x}-{self.span_id:016x}-{self.flags:02x}")]
        if self.trace_state:
            headers.append(("tracestate", self.trace_state.to_header()))
        return headers

    def finish(
        self,
        attributes: dict[str, Any],
        events: Sequence[Event] = (),
        status: Status = UNSET,
        end_ns: int | None = None,
        shared: Mapping[str, Any] | None = None,
    ) -> None:
        """`shared`: the span's first attributes, when they are the same object for many spans
        (an attempt's per kind of attempt, a request's per route) and never changed: the encoder
        writes them once per object. Its keys are not among `attributes`' (the span has
        `shared`'s, then `attributes`', in that order)."""
        starter = self._starter
        if starter is None:
            return
        self._starter = None
        starter._finish(self, attributes, events, status, end_ns, shared)


def _emitter(processor: SpanProcessor) -> Callable[[ReadableSpan], None]:
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from sidecar.telemetry.span_export import EncodingSpanProcessor

    if type(processor) is EncodingSpanProcessor:
        return processor.emit  # span limits are set: the `ReadableSpan` carries what they dropped
    emit = getattr(getattr(processor, "_batch_processor", None), "emit", None)
    if type(processor) is BatchSpanProcessor and callable(emit):
        return emit  # type: ignore[no-any-return]
    return processor.on_end


def inline_decision(sampler: Sampler) -> tuple[bool, int] | None:
    """(record every span, the trace-id bound under which a root span is sampled) for the samplers
    whose decision `SpanStarter.start` takes itself: `parentbased_always_on` exactly as the SDK
    builds it (the default of `OTEL_TRACES_SAMPLER`) and `KeepEvidence`. None for any other."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased

    from sidecar.telemetry.sampling import KeepEvidence

    if type(sampler) is KeepEvidence:
        return True, sampler.bound
    if type(sampler) is not ParentBased:
        return None
    expected = {
        "_root": ALWAYS_ON,
        "_remote_parent_sampled": ALWAYS_ON,
        "_remote_parent_not_sampled": ALWAYS_OFF,
        "_local_parent_sampled": ALWAYS_ON,
        "_local_parent_not_sampled": ALWAYS_OFF,
    }
    if all(getattr(sampler, name, None) is chosen for name, chosen in expected.items()):
        return False, TraceIdRatioBased.get_bound_for_rate(1.0)  # every root sampled
    return None


def remote_parent(context: Context) -> SpanContext | None:
    """The span context a propagator extracted (a client's `traceparent`), if it is valid."""
    span_context = get_current_span(context).get_span_context()
    return span_context if span_context.is_valid else None
