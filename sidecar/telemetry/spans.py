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

_UNSET = Status()
_DEFAULT_LIMITS = (128, None, 128, None)


class SpanStarter:
    """Created once at start-up from the `TracerProvider` and the processor it exports through."""

    __slots__ = ("_bounded", "_ids", "_limits", "_processor", "_resource", "_sampler", "_scope")

    def __init__(
        self, provider: TracerProvider, processor: SpanProcessor, scope: InstrumentationScope
    ) -> None:
        self._sampler = provider.sampler
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

    def start(self, name: str, kind: SpanKind, parent: Context | None) -> OpenSpan:
        """What `Tracer.start_span` decides at the start: ids, sampling, trace flags and state."""
        parent_context = _parent_span_context(parent)
        if parent_context is None:
            trace_id = self._ids.generate_trace_id()
            random_trace_id = self._ids.is_trace_id_random()
        else:
            trace_id = parent_context.trace_id
            random_trace_id = parent_context.trace_flags.random_trace_id
        result = self._sampler.should_sample(parent, trace_id, name, kind, None, ())
        flags = TraceFlags.SAMPLED if result.decision.is_sampled() else TraceFlags.DEFAULT
        if random_trace_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        context = SpanContext(
            trace_id,
            self._ids.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=result.trace_state,
        )
        recording = result.decision.is_recording()
        return OpenSpan(self if recording else None, name, kind, context, parent_context, result.attributes)

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

    def as_parent(self) -> Context:
        """A context holding this span, for a child's sampler."""
        return set_span_in_context(NonRecordingSpan(self.context))

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


def _parent_span_context(parent: Context | None) -> SpanContext | None:
    context = get_current_span(parent).get_span_context()
    return context if context.is_valid else None
