"""Spans started as bare contexts and finished straight into the span processors (STYLE habit 7).

The SDK's `Tracer.start_span` builds a mutable `Span` per call — a lock, bounded attribute, event
and link containers, a start notification to every processor — although Detour knows a span's
attributes and events only when it settles them, all at once, after the response went out. So a
span is started here as what the upstream `traceparent` needs (the sampler's decision, ids, a
`SpanContext`) and finished as one `ReadableSpan` handed to the processors' `on_end`: what the
exporters receive is the same data the SDK span would have produced (same sampler, id generator,
resource, instrumentation scope and processors, all the `TracerProvider`'s).

Span limits (`OTEL_SPAN_ATTRIBUTE_*`, `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, ...) are honoured when
set; by default Detour's few attributes and events are far below them and are not copied again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import time_ns
from typing import TYPE_CHECKING, Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
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

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.sampling import Sampler

_UNSET = Status()
_FLAGS = {  # (sampled, random trace id): the trace flags of a new span
    (sampled, random): TraceFlags(
        (TraceFlags.SAMPLED if sampled else 0) | (TraceFlags.RANDOM_TRACE_ID if random else 0)
    )
    for sampled in (False, True)
    for random in (False, True)
}
_DEFAULT_LIMITS = (128, None, 128, None)
_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT  # the ratio rule looks at the lower 64 bits


class SpanStarter:
    """Created once at start-up from the `TracerProvider` and the processor it exports through."""

    __slots__ = ("_bounded", "_ids", "_inline", "_limits", "_processor", "_resource", "_sampler",
                 "_scope")  # fmt: skip

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
        ) != _DEFAULT_LIMITS

    def start(self, name: str, kind: SpanKind, parent: SpanContext | None) -> OpenSpan:
        """What `Tracer.start_span` decides at the start: ids, sampling, trace flags and state.
        `parent`: a valid span context (the client's, or the request's SERVER span's), or None."""
        if parent is None:
            trace_id = self._ids.generate_trace_id()
            random_trace_id = self._ids.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_trace_id = parent.trace_flags.random_trace_id
        sampler_attributes: Mapping[str, Any] | None = None
        if self._inline is not None:
            # What Detour's two usual samplers decide, without their calls, contexts and result
            # objects (measured: a fifth of what starting a span cost): a parent's sampled flag,
            # else the trace id against the ratio's bound.
            record_all, bound = self._inline
            if parent is None:
                sampled = trace_id & _TRACE_ID_LIMIT < bound
                trace_state = None
            else:
                sampled = parent.trace_flags.sampled
                trace_state = parent.trace_state
            recording = record_all or sampled
        else:
            in_context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
            result = self._sampler.should_sample(in_context, trace_id, name, kind, None, ())
            sampled = result.decision.is_sampled()
            recording = result.decision.is_recording()
            trace_state = result.trace_state
            sampler_attributes = result.attributes
        context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=_FLAGS[sampled, random_trace_id],
            trace_state=trace_state,
        )
        return OpenSpan(self if recording else None, name, kind, context, parent, sampler_attributes)

    def _finish(
        self,
        span: OpenSpan,
        attributes: dict[str, Any],
        events: Sequence[Event],
        status: Status,
        end_ns: int | None,
    ) -> None:
        context = span.context
        if not context.trace_flags.sampled:  # recorded only, and kept for what happened (sampling.py)
            context = SpanContext(
                context.trace_id,
                context.span_id,
                is_remote=False,
                trace_flags=TraceFlags(context.trace_flags | TraceFlags.SAMPLED),
                trace_state=context.trace_state,
            )
        if span.sampler_attributes:
            attributes = {**span.sampler_attributes, **attributes}
        if self._bounded:
            attributes, events = self._bound(attributes, events)
        readable = ReadableSpan(
            name=span.name,
            context=context,
            parent=span.parent,
            resource=self._resource,
            attributes=attributes,
            events=events,
            links=(),
            kind=span.kind,
            status=status,
            start_time=span.start_ns,
            end_time=end_ns if end_ns is not None else time_ns(),
            instrumentation_scope=self._scope,
        )
        self._processor.on_end(readable)

    def _bound(self, attributes: dict[str, Any], events: Sequence[Event]) -> tuple[Any, Sequence[Event]]:
        """As the SDK's span would: only when limits were configured."""
        limits = self._limits
        bounded = BoundedAttributes(
            limits.max_span_attributes,
            attributes,
            immutable=True,
            max_value_len=limits.max_span_attribute_length,
        )
        kept = events[-limits.max_events :] if limits.max_events else ()
        return bounded, [
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
            for event in kept
        ]


class OpenSpan:
    """A started span: its context now, its attributes and events when it is finished (once)."""

    __slots__ = ("_starter", "context", "kind", "name", "parent", "sampler_attributes", "start_ns")

    def __init__(
        self,
        starter: SpanStarter | None,
        name: str,
        kind: SpanKind,
        context: SpanContext,
        parent: SpanContext | None,
        sampler_attributes: Mapping[str, Any] | None,
    ) -> None:
        self._starter = starter
        self.name = name
        self.kind = kind
        self.context = context
        self.parent = parent
        self.sampler_attributes = sampler_attributes
        self.start_ns = time_ns()

    @property
    def recording(self) -> bool:
        """False when sampled out (or already finished): then only its context is used."""
        return self._starter is not None

    @property
    def sampled(self) -> bool:
        """Kept whatever happens; a span recorded but not sampled is kept only for what happened."""
        return bool(self.context.trace_flags.sampled)

    def finish(
        self,
        attributes: dict[str, Any],
        events: Sequence[Event] = (),
        status: Status = _UNSET,
        end_ns: int | None = None,
    ) -> None:
        starter = self._starter
        if starter is None:
            return
        self._starter = None
        starter._finish(self, attributes, events, status, end_ns)


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
